//! An OpenAI-compatible HTTP server: `POST /v1/chat/completions`, `POST /v1/completions`,
//! `GET /v1/models`, `GET /health`. Requests are checked, rendered with the chat template and tokenized
//! on the HTTP side, then queued for the single engine thread (see [`worker`]), which streams events
//! back; the HTTP side turns them into JSON or server-sent events.

pub mod api;
pub mod worker;

use crate::chat::{Answer, ChatTemplate, Event, OutputParser, RenderOptions, ToolSchemas};
use crate::tokenizer::Tokenizer;
use anyhow::{Context, Result};
use api::{ApiError, ApiResult, Common, Defaults, Head, Prompt};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use worker::{Finish, GenParams, GeneratorFactory, Job, JobEvent, Queue, Usage};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: String,
    /// 0 picks a free port (see [`Server::addr`]).
    pub port: u16,
    /// The id `/v1/models` lists and requests must name (or leave out).
    pub model_name: String,
    /// Requests that may wait while one generates; more get 429.
    pub queue: usize,
    pub defaults: Defaults,
}

struct AppState {
    model_name: String,
    defaults: Defaults,
    queue: Arc<Queue>,
    queue_cap: usize,
    tokenizer: Arc<Tokenizer>,
    template: ChatTemplate,
    ctx_len: usize,
    created: u64,
}

/// A running server: the HTTP threads and the engine thread. Dropping it stops both (a generation
/// under way ends first).
pub struct Server {
    addr: SocketAddr,
    queue: Arc<Queue>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    http: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Builds the generator on a new engine thread (an error there is returned here), binds
    /// `host:port` and starts answering.
    pub fn start(
        config: ServerConfig,
        tokenizer: Tokenizer,
        template: ChatTemplate,
        generator: GeneratorFactory,
    ) -> Result<Self> {
        let tokenizer = Arc::new(tokenizer);
        let queue = Arc::new(Queue::new(config.queue));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        {
            let queue = queue.clone();
            let tokenizer = tokenizer.clone();
            std::thread::Builder::new().name("engine".into()).spawn(move || match generator() {
                Ok(g) => {
                    let _ = ready_tx.send(Ok(g.ctx_len()));
                    worker::run(queue, tokenizer, g);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })?;
        }
        let ctx_len = ready_rx.recv().context("the engine thread ended before the model was loaded")??;
        let listener = std::net::TcpListener::bind((config.host.as_str(), config.port))
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let created =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let state = Arc::new(AppState {
            model_name: config.model_name,
            defaults: config.defaults,
            queue: queue.clone(),
            queue_cap: config.queue.max(1),
            tokenizer,
            template,
            ctx_len,
            created,
        });
        let app = router(state);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("http")
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let http = std::thread::Builder::new().name("http".into()).spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return eprintln!("error: cannot listen: {e}"),
                };
                let shutdown = async {
                    let _ = stop_rx.await;
                };
                if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                    eprintln!("error: server: {e}");
                }
            });
        })?;
        Ok(Self { addr, queue, stop: Some(stop_tx), http: Some(http) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Blocks until the server stops (it does not by itself).
    pub fn wait(mut self) {
        if let Some(h) = self.http.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.queue.close();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(64 << 20))
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", Some("not_found"), format!("no route {method} {uri}"))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        Some("method_not_allowed"),
        format!("{method} is not allowed on {}", uri.path()),
    )
}

fn model_json(st: &AppState) -> Value {
    json!({"id": st.model_name, "object": "model", "created": st.created, "owned_by": "glm-wgpu",
           "context_length": st.ctx_len})
}

async fn models(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_json(&st)]}))
}

async fn model(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    check_model(&st, Some(&id))?;
    Ok(Json(model_json(&st)))
}

async fn health(State(st): State<Arc<AppState>>) -> Json<Value> {
    let s = &st.queue.stats;
    Json(json!({
        "status": "ok",
        "model": st.model_name,
        "busy": s.busy.load(Ordering::Relaxed),
        "queued": st.queue.len(),
        "queue_capacity": st.queue_cap,
        "served": s.served.load(Ordering::Relaxed),
        "cancelled": s.cancelled.load(Ordering::Relaxed),
    }))
}

fn check_model(st: &AppState, name: Option<&str>) -> ApiResult<()> {
    match name {
        Some(n) if n != st.model_name => Err(ApiError::model_not_found(n, &st.model_name)),
        _ => Ok(()),
    }
}

/// Queues a generation; its events arrive on the returned channel.
fn submit(
    st: &AppState,
    prompt: Vec<u32>,
    common: &Common,
    parser: Option<OutputParser>,
) -> ApiResult<UnboundedReceiver<JobEvent>> {
    if prompt.len() >= st.ctx_len {
        return Err(ApiError::context_length(prompt.len(), st.ctx_len));
    }
    let room = st.ctx_len - prompt.len();
    let params = GenParams {
        sampling: common.sampling.clone(),
        max_tokens: common.max_tokens.map_or(room, |m| m.min(room)),
        stop_ids: if common.ignore_eos { Vec::new() } else { st.tokenizer.eos_ids().to_vec() },
    };
    let (tx, rx) = unbounded_channel();
    let job = Job { prompt, params, parser, stop_strings: common.stop.clone(), events: tx };
    st.queue.push(job).map_err(|_| ApiError::queue_full(st.queue_cap))?;
    Ok(rx)
}

async fn chat_completions(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    chat(&st, &body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn chat(st: &AppState, body: &[u8]) -> ApiResult<Response> {
    let obj = api::parse_body(body)?;
    let req = api::parse_chat(&obj, &st.defaults)?;
    check_model(st, req.common.model.as_deref())?;
    let opts =
        RenderOptions { tools: req.tools.clone(), add_generation_prompt: true, kwargs: req.template_kwargs.clone() };
    let text = st.template.render(&req.messages, &opts).map_err(|e| ApiError::invalid("messages", format!("{e:#}")))?;
    let prompt = st.tokenizer.encode(&text).map_err(|e| ApiError::internal(format!("{e:#}")))?;
    // The template opened the reasoning block (`<|assistant|><think>`) unless thinking is off.
    let in_reasoning = text.trim_end().ends_with("<think>");
    let parser = OutputParser::new(in_reasoning, req.tools.as_deref().map(ToolSchemas::from_tools));
    let mut rx = submit(st, prompt, &req.common, Some(parser))?;
    let head = Head::new("chatcmpl", &st.model_name);
    if req.common.stream {
        let first = head.chat_chunk(json!({"role": "assistant", "content": ""}), None);
        let include_usage = req.common.include_usage;
        let mut calls = 0;
        return Ok(sse(rx, first, move |e| match e {
            JobEvent::Delta(Event::Reasoning(s)) => vec![head.chat_chunk(json!({"reasoning_content": s}), None)],
            JobEvent::Delta(Event::Content(s)) => vec![head.chat_chunk(json!({"content": s}), None)],
            JobEvent::Delta(Event::ToolCall(c)) => {
                let call = api::tool_call_json(&c, &api::tool_call_id(), Some(calls));
                calls += 1;
                vec![head.chat_chunk(json!({"tool_calls": [call]}), None)]
            }
            JobEvent::Done(finish, usage) => {
                let mut out = vec![head.chat_chunk(json!({}), Some(api::finish_reason(finish, calls > 0)))];
                if include_usage {
                    out.push(head.usage_chunk("chat.completion.chunk", &usage));
                }
                out
            }
            JobEvent::Error(m) => vec![ApiError::internal(m).body()],
        }));
    }
    let mut answer = Answer::default();
    let (finish, usage) = collect(&mut rx, |e| answer.add(e)).await?;
    Ok(Json(head.chat_completion(&answer, finish, &usage)).into_response())
}

async fn completions(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    complete(&st, &body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn complete(st: &AppState, body: &[u8]) -> ApiResult<Response> {
    let obj = api::parse_body(body)?;
    let prompt = api::parse_prompt(&obj)?;
    let common = api::parse_common(&obj, &st.defaults)?;
    check_model(st, common.model.as_deref())?;
    let prompt = match prompt {
        Prompt::Text(t) => st.tokenizer.encode(&t).map_err(|e| ApiError::internal(format!("{e:#}")))?,
        Prompt::Ids(ids) => {
            let vocab = st.tokenizer.vocab_size();
            if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
                return Err(ApiError::invalid(
                    "prompt",
                    format!("token id {bad} is outside the vocabulary of {vocab}"),
                ));
            }
            ids
        }
    };
    let mut rx = submit(st, prompt, &common, None)?;
    let head = Head::new("cmpl", &st.model_name);
    if common.stream {
        let include_usage = common.include_usage;
        return Ok(sse(rx, head.text_chunk("", None), move |e| match e {
            JobEvent::Delta(Event::Content(s)) => vec![head.text_chunk(&s, None)],
            JobEvent::Delta(_) => vec![],
            JobEvent::Done(finish, usage) => {
                let mut out = vec![head.text_chunk("", Some(api::finish_reason(finish, false)))];
                if include_usage {
                    out.push(head.usage_chunk("text_completion", &usage));
                }
                out
            }
            JobEvent::Error(m) => vec![ApiError::internal(m).body()],
        }));
    }
    let mut text = String::new();
    let (finish, usage) = collect(&mut rx, |e| {
        if let Event::Content(s) = e {
            text.push_str(&s)
        }
    })
    .await?;
    Ok(Json(head.text_completion(&text, finish, &usage)).into_response())
}

/// Passes a job's events to `on_event` until it ends; returns how it ended.
async fn collect(rx: &mut UnboundedReceiver<JobEvent>, mut on_event: impl FnMut(Event)) -> ApiResult<(Finish, Usage)> {
    loop {
        match rx.recv().await {
            Some(JobEvent::Delta(e)) => on_event(e),
            Some(JobEvent::Done(finish, usage)) => return Ok((finish, usage)),
            Some(JobEvent::Error(m)) => return Err(ApiError::internal(m)),
            None => return Err(ApiError::internal("the engine stopped before the answer was complete")),
        }
    }
}

/// A server-sent event stream: `first`, then what `map` makes of each event, then `[DONE]`. When the
/// client goes away the stream is dropped, and with it `rx`, which stops the generation.
fn sse(
    rx: UnboundedReceiver<JobEvent>,
    first: Value,
    mut map: impl FnMut(JobEvent) -> Vec<Value> + Send + 'static,
) -> Response {
    let events = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    let data = stream::iter([first.to_string()])
        .chain(events.flat_map(move |e| stream::iter(map(e).into_iter().map(|v| v.to_string()))))
        .chain(stream::iter(["[DONE]".to_string()]))
        .map(|d| Ok::<_, Infallible>(axum::response::sse::Event::default().data(d)));
    Sse::new(data).keep_alive(KeepAlive::default()).into_response()
}
