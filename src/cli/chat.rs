//! `glm-wgpu chat`: an interactive chat in the terminal. Answers stream as they are generated, the
//! reasoning shown apart (dimmed); the KV cache is kept between turns so only the new turn is run;
//! Ctrl-C stops an answer and keeps the session.

use super::run::{engine_options, load_engine, open};
use super::ModelArgs;
use crate::chat::{Answer, ChatTemplate, Event, OutputParser, OutputStream, RenderOptions, Session};
use crate::generate::GenerateRequest;
use crate::sampling::SamplingParams;
use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Sampling options of `chat` and `serve` (for `serve`, the defaults of requests that leave them out).
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 is greedy (on the GPU unless a penalty is set).
    #[arg(long, default_value_t = 1.0)]
    pub temp: f32,
    /// Keep only the K most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Keep the most likely tokens up to this probability mass.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than this fraction of the most likely one (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Repetition penalty over the whole sequence, prompt included (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Presence penalty over generated tokens, -2 to 2 (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Frequency penalty over generated tokens, -2 to 2 (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Random seed, for answers that repeat [default: a new one each answer].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop the answer where this text appears (repeatable).
    #[arg(long, value_name = "TEXT")]
    pub stop: Vec<String>,
    /// Most tokens per answer [default: until the model ends its turn or the context is full].
    #[arg(short = 'n', long)]
    pub max_tokens: Option<usize>,
}

impl SamplingArgs {
    /// The sampling parameters, checked.
    pub fn params(&self) -> Result<SamplingParams> {
        let p = SamplingParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed.unwrap_or(0),
            min_p: self.min_p,
            repetition_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
        };
        p.validate()?;
        Ok(p)
    }
}

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A Jinja chat template file to use instead of the model's own.
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<PathBuf>,
    /// A system message at the start of the conversation.
    #[arg(long)]
    pub system: Option<String>,
    /// Thinking off: the model answers directly (`enable_thinking=false`) and any reasoning is hidden.
    #[arg(long)]
    pub no_think: bool,
    /// Keep generating past end-of-turn tokens (until --max-tokens or the context is full).
    #[arg(long)]
    pub ignore_eos: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// Set while an answer is being generated: Ctrl-C then stops the answer instead of the program.
static GENERATING: AtomicBool = AtomicBool::new(false);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

const HELP: &str = "commands: /reset (new conversation), /think (thinking on/off), /exit; Ctrl-C stops an answer; \
                    end a line with \\ to continue it";

/// Shows events as they come: reasoning dimmed (or between <think> tags without colours), content plain.
struct Printer {
    color: bool,
    show_reasoning: bool,
    in_reasoning: bool,
    wrote: bool,
}

impl Printer {
    fn show(&mut self, out: &mut impl Write, e: &Event) -> std::io::Result<()> {
        match e {
            Event::Reasoning(s) if self.show_reasoning => {
                if !self.in_reasoning {
                    write!(out, "{}", if self.color { "\x1b[2;3m" } else { "<think>\n" })?;
                    self.in_reasoning = true;
                }
                write!(out, "{s}")?;
            }
            Event::Reasoning(_) => {}
            Event::Content(s) => {
                self.end_reasoning(out)?;
                write!(out, "{s}")?;
            }
            Event::ToolCall(c) => {
                self.end_reasoning(out)?;
                write!(out, "[tool call {} {}]", c.name, c.arguments_json())?;
            }
        }
        self.wrote = true;
        out.flush()
    }

    fn end_reasoning(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if self.in_reasoning {
            write!(out, "{}", if self.color { "\x1b[0m\n" } else { "\n</think>\n" })?;
            self.in_reasoning = false;
        }
        Ok(())
    }
}

fn dim(color: bool, s: &str) -> String {
    if color {
        format!("\x1b[2m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// Reads one user turn (lines ending in `\` continue it); `None` at end of input.
fn read_turn(input: &mut impl BufRead, out: &mut impl Write) -> std::io::Result<Option<String>> {
    let mut text = String::new();
    let mut prompt = "> ";
    loop {
        write!(out, "{prompt}")?;
        out.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            return Ok(if text.is_empty() { None } else { Some(text) });
        }
        let line = line.trim_end_matches(['\n', '\r']);
        match line.strip_suffix('\\') {
            Some(head) => {
                text.push_str(head);
                text.push('\n');
                prompt = ". ";
            }
            None => {
                text.push_str(line);
                return Ok(Some(text));
            }
        }
    }
}

pub fn chat(a: ChatArgs) -> Result<()> {
    let base = a.sampling.params()?;
    let (model, tok) = open(&a.model)?;
    let template = ChatTemplate::load(&model, a.chat_template.as_deref())?;
    let options = engine_options(&a.model, &model);
    let mut engine = load_engine(&a.model, &model, options)?;
    ctrlc::set_handler(|| {
        if GENERATING.load(Ordering::SeqCst) {
            INTERRUPTED.store(true, Ordering::SeqCst);
        } else {
            println!();
            std::process::exit(0);
        }
    })?;
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let err_color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    eprintln!("{}", dim(err_color, &format!("chat with {} — {HELP}", a.model.model.display())));

    let mut think = !a.no_think;
    let start: Vec<Value> = a.system.iter().map(|s| json!({"role": "system", "content": s})).collect();
    let mut messages = start.clone();
    let mut session = Session::new();
    let mut conversation: Vec<u32> = Vec::new();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    loop {
        let mut out = std::io::stdout().lock();
        let Some(line) = read_turn(&mut input, &mut out)? else {
            writeln!(out)?;
            break;
        };
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/help" => {
                writeln!(out, "{HELP}")?;
                continue;
            }
            "/reset" => {
                messages = start.clone();
                conversation.clear();
                session.reset();
                writeln!(out, "{}", dim(color, "(new conversation)"))?;
                continue;
            }
            "/think" => {
                think = !think;
                writeln!(out, "{}", dim(color, if think { "(thinking on)" } else { "(thinking off)" }))?;
                continue;
            }
            s if s.starts_with('/') && !s.contains(char::is_whitespace) => {
                writeln!(out, "unknown command {s}; {HELP}")?;
                continue;
            }
            _ => {}
        }
        // Earlier reasoning stays in the history (`clear_thinking: false`), so the history renders the
        // same every turn and the new turn's text is what follows it.
        let opts = |gen: bool| RenderOptions {
            tools: None,
            add_generation_prompt: gen,
            kwargs: json!({"enable_thinking": think, "clear_thinking": false}).as_object().cloned().unwrap_or_default(),
        };
        let before = template.render(&messages, &opts(false))?;
        messages.push(json!({"role": "user", "content": line}));
        let text = template.render(&messages, &opts(true))?;
        // The conversation's tokens as the model saw and wrote them, then the new turn: the cache
        // covers all of it but the last answer's last token.
        let prompt = match text.strip_prefix(before.as_str()) {
            Some(turn) if !conversation.is_empty() => {
                let mut p = conversation.clone();
                p.extend(tok.encode(turn)?);
                p
            }
            _ => tok.encode(&text)?,
        };
        let ctx = engine.ctx_len();
        if prompt.len() >= ctx {
            messages.pop();
            eprintln!(
                "error: the conversation is {} tokens but the context holds {ctx}: /reset, or raise --ctx",
                prompt.len()
            );
            continue;
        }
        let room = ctx - prompt.len();
        let mut sampling = base.clone();
        if a.sampling.seed.is_none() {
            sampling.seed = rand::random();
        }
        let req = GenerateRequest {
            prompt: &prompt,
            max_new: a.sampling.max_tokens.map_or(room, |n| n.min(room)),
            sampling,
            stop_ids: if a.ignore_eos { &[] } else { tok.eos_ids() },
        };
        let parser = OutputParser::new(text.trim_end().ends_with("<think>"), None);
        let mut stream = OutputStream::new(Some(parser), a.sampling.stop.clone(), tok.eos_ids());
        let mut printer = Printer { color, show_reasoning: think, in_reasoning: false, wrote: false };
        let mut answer = Answer::default();
        let mut generated = Vec::new();
        INTERRUPTED.store(false, Ordering::SeqCst);
        GENERATING.store(true, Ordering::SeqCst);
        let result = session.generate(&mut engine, &req, |id| {
            generated.push(id);
            for e in stream.push_token(&tok, id) {
                printer.show(&mut out, &e)?;
                answer.add(e);
            }
            Ok(!INTERRUPTED.load(Ordering::SeqCst) && !stream.stopped())
        });
        GENERATING.store(false, Ordering::SeqCst);
        let stats = match result {
            Ok(s) => s,
            Err(e) => {
                printer.end_reasoning(&mut out)?;
                writeln!(out)?;
                eprintln!("error: {e:#}");
                messages.pop();
                conversation.clear();
                session.reset();
                continue;
            }
        };
        for e in stream.finish() {
            printer.show(&mut out, &e)?;
            answer.add(e);
        }
        printer.end_reasoning(&mut out)?;
        if INTERRUPTED.load(Ordering::SeqCst) {
            write!(out, "{}", dim(color, if printer.wrote { " [interrupted]" } else { "[interrupted]" }))?;
        }
        writeln!(out)?;
        out.flush()?;
        eprintln!(
            "{}",
            dim(
                err_color,
                &format!(
                    "[prompt: {} new tokens, {} cached | answer: {} tokens, {:.1} tok/s | stop: {}]",
                    stats.prompt_tokens - stats.cached_tokens,
                    stats.cached_tokens,
                    stats.generated,
                    stats.decode_tok_s(),
                    if stream.stopped() { "stop string" } else { stats.stop.as_str() }
                )
            )
        );
        messages.push(answer.to_message());
        if stream.stopped() {
            // The model wrote past the stop string: the history no longer matches its tokens.
            conversation.clear();
        } else {
            if generated.last().is_some_and(|t| tok.is_eos(*t)) {
                generated.pop();
            }
            conversation = prompt.clone();
            conversation.extend(generated);
        }
    }
    Ok(())
}
