//! `glm-wgpu serve`: the OpenAI-compatible HTTP server.

use super::chat::SamplingArgs;
use super::run::{engine_options, load_engine, open};
use super::ModelArgs;
use crate::chat::ChatTemplate;
use crate::server::api::Defaults;
use crate::server::worker::{EngineGenerator, Generator, GeneratorFactory};
use crate::server::{Server, ServerConfig};
use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The model id clients name [default: the model file or directory name].
    #[arg(long)]
    pub model_name: Option<String>,
    /// Requests that may wait while one generates; more are answered 429.
    #[arg(long, default_value_t = 16)]
    pub queue: usize,
    /// A Jinja chat template file to use instead of the model's own.
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<PathBuf>,
    /// Thinking off by default (a request can still turn it on with
    /// `"chat_template_kwargs": {"enable_thinking": true}`).
    #[arg(long)]
    pub no_think: bool,
    /// Defaults for requests that leave these out.
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// `GLM-4.7-Flash-Q8_0.gguf` → `GLM-4.7-Flash-Q8_0`; a directory → its name.
pub fn default_model_name(path: &Path) -> String {
    let name = if path.is_dir() { path.file_name() } else { path.file_stem() };
    name.map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "glm-4.7-flash".into())
}

pub fn serve(a: ServeArgs) -> Result<()> {
    let sampling = a.sampling.params()?;
    let (model, tokenizer) = open(&a.model)?;
    let template = ChatTemplate::load(&model, a.chat_template.as_deref())?;
    let mut template_kwargs = serde_json::Map::new();
    if a.no_think {
        template_kwargs.insert("enable_thinking".into(), false.into());
    }
    let config = ServerConfig {
        host: a.host.clone(),
        port: a.port,
        model_name: a.model_name.clone().unwrap_or_else(|| default_model_name(&a.model.model)),
        queue: a.queue,
        defaults: Defaults {
            sampling,
            fixed_seed: a.sampling.seed.is_some(),
            max_tokens: a.sampling.max_tokens,
            template_kwargs,
        },
    };
    let options = engine_options(&a.model, &model);
    let model_args = a.model.clone();
    let generator: GeneratorFactory = Box::new(move || {
        let engine = load_engine(&model_args, &model, options)?;
        Ok(Box::new(EngineGenerator::new(engine)) as Box<dyn Generator>)
    });
    let name = config.model_name.clone();
    let server = Server::start(config, tokenizer, template, generator)?;
    eprintln!("serving {name} on http://{} (Ctrl-C to stop)", server.addr());
    let (tx, rx) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })?;
    let _ = rx.recv();
    eprintln!("shutting down");
    drop(server);
    Ok(())
}
