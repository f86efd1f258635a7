//! OpenAI's request and response shapes: parsing and checking request bodies, errors as
//! `{"error": {"message", "type", "param", "code"}}`, and the JSON of answers and stream chunks.

use super::worker::{Finish, Usage};
use crate::chat::{Answer, ToolCall};
use crate::sampling::SamplingParams;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// An error answered in OpenAI's shape.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, code: Option<&'static str>, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), kind, param: None, code }
    }

    /// A bad value of request field `param`.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_string()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", Some("invalid_value"), message)
        }
    }

    pub fn missing(param: &str) -> Self {
        Self {
            param: Some(param.to_string()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("missing_required_parameter"),
                format!("missing required parameter: '{param}'"),
            )
        }
    }

    pub fn malformed_json(e: &serde_json::Error) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("invalid_json"),
            format!("the request body is not valid JSON: {e}"),
        )
    }

    pub fn model_not_found(name: &str, served: &str) -> Self {
        Self {
            param: Some("model".into()),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
                format!("the model '{name}' does not exist; this server serves '{served}'"),
            )
        }
    }

    pub fn context_length(prompt: usize, ctx: usize) -> Self {
        Self {
            param: Some("messages".into()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("context_length_exceeded"),
                format!(
                    "this model's context holds {ctx} tokens, but the prompt is {prompt} tokens (it must leave room \
                     for at least one generated token)"
                ),
            )
        }
    }

    pub fn queue_full(cap: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            Some("queue_full"),
            format!("the server is busy: {cap} requests are already waiting; retry later"),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", None, message)
    }

    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The body as a JSON object.
pub fn parse_body(bytes: &[u8]) -> ApiResult<Map<String, Value>> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("invalid_json"),
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::malformed_json(&e)),
    }
}

/// A field, with `null` read as absent.
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn number(obj: &Map<String, Value>, key: &str, range: (f64, f64), range_text: &str) -> ApiResult<Option<f32>> {
    let Some(v) = field(obj, key) else { return Ok(None) };
    let x = v.as_f64().ok_or_else(|| ApiError::invalid(key, format!("'{key}' must be a number, got {v}")))?;
    if !(range.0..=range.1).contains(&x) {
        return Err(ApiError::invalid(key, format!("'{key}' must be {range_text}, got {x}")));
    }
    Ok(Some(x as f32))
}

fn integer(obj: &Map<String, Value>, key: &str, min: i64) -> ApiResult<Option<i64>> {
    let Some(v) = field(obj, key) else { return Ok(None) };
    let x = v.as_i64().ok_or_else(|| ApiError::invalid(key, format!("'{key}' must be an integer, got {v}")))?;
    if x < min {
        return Err(ApiError::invalid(key, format!("'{key}' must be at least {min}, got {x}")));
    }
    Ok(Some(x))
}

fn boolean(obj: &Map<String, Value>, key: &str) -> ApiResult<Option<bool>> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ApiError::invalid(key, format!("'{key}' must be a boolean, got {v}"))),
    }
}

/// What the server uses where a request does not say.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// `seed` here is used only when `fixed_seed`; otherwise each request without a seed gets a random one.
    pub sampling: SamplingParams,
    pub fixed_seed: bool,
    /// `None`: until an end-of-sequence token or the context is full.
    pub max_tokens: Option<usize>,
    /// Template variables for every chat request (e.g. `enable_thinking: false` from `--no-think`).
    pub template_kwargs: Map<String, Value>,
}

/// The fields chat and text completions share.
#[derive(Debug, Clone)]
pub struct Common {
    pub model: Option<String>,
    pub stream: bool,
    pub include_usage: bool,
    pub sampling: SamplingParams,
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
}

pub fn parse_common(obj: &Map<String, Value>, d: &Defaults) -> ApiResult<Common> {
    let model = match field(obj, "model") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(ApiError::invalid("model", format!("'model' must be a string, got {v}"))),
    };
    let stream = boolean(obj, "stream")?.unwrap_or(false);
    let include_usage = match field(obj, "stream_options") {
        None => false,
        Some(Value::Object(o)) => boolean(o, "include_usage")?.unwrap_or(false),
        Some(v) => {
            return Err(ApiError::invalid("stream_options", format!("'stream_options' must be an object, got {v}")))
        }
    };
    if let Some(n) = integer(obj, "n", 1)? {
        if n != 1 {
            return Err(ApiError::invalid("n", format!("only n = 1 is supported, got {n}")));
        }
    }
    if boolean(obj, "logprobs")? == Some(true) || field(obj, "top_logprobs").is_some() {
        return Err(ApiError::invalid("logprobs", "log probabilities are not supported"));
    }
    let mut s = d.sampling.clone();
    if let Some(t) = number(obj, "temperature", (0.0, 2.0), "between 0 and 2")? {
        s.temperature = t;
    }
    if let Some(p) = field(obj, "top_p") {
        let x = p.as_f64().ok_or_else(|| ApiError::invalid("top_p", format!("'top_p' must be a number, got {p}")))?;
        if !(x > 0.0 && x <= 1.0) {
            return Err(ApiError::invalid("top_p", format!("'top_p' must be in (0, 1], got {x}")));
        }
        s.top_p = x as f32;
    }
    if let Some(k) = integer(obj, "top_k", -1)? {
        s.top_k = k.max(0) as usize;
    }
    if let Some(p) = number(obj, "min_p", (0.0, 1.0), "between 0 and 1")? {
        s.min_p = p;
    }
    if let Some(p) = number(obj, "presence_penalty", (-2.0, 2.0), "between -2 and 2")? {
        s.presence_penalty = p;
    }
    if let Some(p) = number(obj, "frequency_penalty", (-2.0, 2.0), "between -2 and 2")? {
        s.frequency_penalty = p;
    }
    if let Some(p) = number(obj, "repetition_penalty", (f64::MIN_POSITIVE, 100.0), "in (0, 100]")? {
        s.repetition_penalty = p;
    }
    match field(obj, "seed") {
        None if d.fixed_seed => {}
        None => s.seed = rand::random(),
        Some(v) => {
            s.seed = match (v.as_u64(), v.as_i64()) {
                (Some(u), _) => u,
                (None, Some(i)) => i as u64,
                _ => return Err(ApiError::invalid("seed", format!("'seed' must be an integer, got {v}"))),
            }
        }
    }
    let mut max_tokens = d.max_tokens;
    for key in ["max_tokens", "max_completion_tokens"] {
        if let Some(n) = integer(obj, key, 1)? {
            max_tokens = Some(n as usize);
        }
    }
    let stop = match field(obj, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.len() <= 16 && a.iter().all(Value::is_string) => {
            a.iter().map(|v| v.as_str().expect("checked").to_string()).collect()
        }
        Some(v) => {
            return Err(ApiError::invalid("stop", format!("'stop' must be a string or up to 16 strings, got {v}")))
        }
    };
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop", "stop strings must not be empty"));
    }
    let ignore_eos = boolean(obj, "ignore_eos")?.unwrap_or(false);
    Ok(Common { model, stream, include_usage, sampling: s, max_tokens, stop, ignore_eos })
}

/// A chat request, checked and normalized for the template.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub common: Common,
    pub messages: Vec<Value>,
    /// Declared tools, unless `tool_choice` is "none".
    pub tools: Option<Vec<Value>>,
    pub template_kwargs: Map<String, Value>,
}

const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// Checks a message and puts it in the form the template expects: `developer` becomes `system`,
/// a `null` content becomes "", and tool call arguments given as JSON strings (as OpenAI sends them)
/// become objects.
fn normalize_message(i: usize, m: &Value) -> ApiResult<Value> {
    let param = format!("messages[{i}]");
    let Value::Object(obj) = m else {
        return Err(ApiError::invalid(&param, format!("{param} must be an object")));
    };
    let mut obj = obj.clone();
    let role = match obj.get("role") {
        Some(Value::String(r)) if ROLES.contains(&r.as_str()) => r.clone(),
        Some(r) => {
            return Err(ApiError::invalid(
                &format!("{param}.role"),
                format!("{param}.role must be one of system, developer, user, assistant, tool; got {r}"),
            ))
        }
        None => return Err(ApiError::missing(&format!("{param}.role"))),
    };
    if role == "developer" {
        obj.insert("role".into(), "system".into());
    }
    match obj.get("content") {
        None | Some(Value::Null) => {
            if role != "assistant" {
                return Err(ApiError::missing(&format!("{param}.content")));
            }
            obj.insert("content".into(), "".into());
        }
        Some(Value::String(_)) | Some(Value::Array(_)) => {}
        Some(v) => {
            return Err(ApiError::invalid(
                &format!("{param}.content"),
                format!("{param}.content must be a string or an array of parts, got {v}"),
            ))
        }
    }
    if let Some(Value::Array(calls)) = obj.get_mut("tool_calls") {
        for (j, c) in calls.iter_mut().enumerate() {
            let p = format!("{param}.tool_calls[{j}].function");
            let f = c.get_mut("function").ok_or_else(|| ApiError::missing(&p))?;
            if !f.get("name").is_some_and(Value::is_string) {
                return Err(ApiError::missing(&format!("{p}.name")));
            }
            let args = match f.get("arguments") {
                None | Some(Value::Null) => Value::Object(Map::new()),
                Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
                Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => {
                        return Err(ApiError::invalid(
                            &format!("{p}.arguments"),
                            format!("{p}.arguments must be a JSON object (as a string), got {s:?}"),
                        ))
                    }
                },
                Some(v @ Value::Object(_)) => v.clone(),
                Some(v) => {
                    return Err(ApiError::invalid(
                        &format!("{p}.arguments"),
                        format!("{p}.arguments must be an object, got {v}"),
                    ))
                }
            };
            f["arguments"] = args;
        }
    }
    Ok(Value::Object(obj))
}

pub fn parse_chat(obj: &Map<String, Value>, d: &Defaults) -> ApiResult<ChatRequest> {
    let messages = match field(obj, "messages") {
        None => return Err(ApiError::missing("messages")),
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(v) => return Err(ApiError::invalid("messages", format!("'messages' must be a non-empty array, got {v}"))),
    };
    let messages = messages.iter().enumerate().map(|(i, m)| normalize_message(i, m)).collect::<ApiResult<Vec<_>>>()?;
    let common = parse_common(obj, d)?;
    let tools = match field(obj, "tools") {
        None => None,
        Some(Value::Array(a)) => {
            for (i, t) in a.iter().enumerate() {
                if !t.pointer("/function/name").is_some_and(Value::is_string) {
                    return Err(ApiError::invalid(
                        &format!("tools[{i}]"),
                        format!("tools[{i}] must be {{\"type\": \"function\", \"function\": {{\"name\": …}}}}"),
                    ));
                }
            }
            (!a.is_empty()).then(|| a.clone())
        }
        Some(v) => return Err(ApiError::invalid("tools", format!("'tools' must be an array, got {v}"))),
    };
    let tools = match field(obj, "tool_choice") {
        None => tools,
        Some(Value::String(s)) if s == "none" => None,
        Some(Value::String(s)) if s == "auto" => tools,
        // Forcing a call needs constrained decoding, which the engine does not do: say so rather
        // than accept the request and ignore the constraint.
        Some(v) if *v == "required" || v.is_object() => {
            return Err(ApiError::invalid(
                "tool_choice",
                format!("'tool_choice' {v} is not supported (the model cannot be forced to call a tool): use \"auto\" or \"none\""),
            ))
        }
        Some(v) => {
            return Err(ApiError::invalid("tool_choice", format!("'tool_choice' must be \"none\" or \"auto\", got {v}")))
        }
    };
    let mut template_kwargs = d.template_kwargs.clone();
    match field(obj, "chat_template_kwargs") {
        None => {}
        Some(Value::Object(o)) => template_kwargs.extend(o.clone()),
        Some(v) => {
            return Err(ApiError::invalid(
                "chat_template_kwargs",
                format!("'chat_template_kwargs' must be an object, got {v}"),
            ))
        }
    }
    // Z.ai's own API: "thinking": {"type": "enabled" | "disabled"}.
    if let Some(t) = field(obj, "thinking") {
        match t.get("type").and_then(Value::as_str) {
            Some(t @ ("enabled" | "disabled")) => {
                template_kwargs.insert("enable_thinking".into(), (t == "enabled").into());
            }
            _ => {
                return Err(ApiError::invalid(
                    "thinking",
                    format!("'thinking' must be {{\"type\": \"enabled\" | \"disabled\"}}, got {t}"),
                ))
            }
        }
    }
    Ok(ChatRequest { common, messages, tools, template_kwargs })
}

/// The prompt of a text completion: a string, or token ids (a single prompt only).
#[derive(Debug, Clone)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

pub fn parse_prompt(obj: &Map<String, Value>) -> ApiResult<Prompt> {
    let bad = |v: &Value| {
        ApiError::invalid("prompt", format!("'prompt' must be a string or token ids (one prompt), got {v}"))
    };
    let ids = |a: &[Value]| -> Option<Vec<u32>> {
        a.iter().map(|x| x.as_u64().and_then(|i| u32::try_from(i).ok())).collect()
    };
    let p = match field(obj, "prompt") {
        None => return Err(ApiError::missing("prompt")),
        Some(Value::String(s)) => Prompt::Text(s.clone()),
        Some(v @ Value::Array(a)) => match a.as_slice() {
            [Value::String(s)] => Prompt::Text(s.clone()),
            [Value::Array(inner)] => Prompt::Ids(ids(inner).ok_or_else(|| bad(v))?),
            _ => Prompt::Ids(ids(a).ok_or_else(|| bad(v))?),
        },
        Some(v) => return Err(bad(v)),
    };
    match &p {
        Prompt::Text(s) if s.is_empty() => Err(ApiError::invalid("prompt", "'prompt' is empty")),
        Prompt::Ids(i) if i.is_empty() => Err(ApiError::invalid("prompt", "'prompt' is empty")),
        _ => Ok(p),
    }
}

pub fn finish_reason(finish: Finish, tool_calls: bool) -> &'static str {
    match finish {
        Finish::Length => "length",
        Finish::Stop if tool_calls => "tool_calls",
        Finish::Stop => "stop",
    }
}

pub fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

/// A new tool call id, `call_` and 24 letters and digits.
pub fn tool_call_id() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    let s: String = (0..24).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect();
    format!("call_{s}")
}

pub fn tool_call_json(call: &ToolCall, id: &str, index: Option<usize>) -> Value {
    let mut v = json!({
        "id": id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments_json()},
    });
    if let Some(i) = index {
        v["index"] = i.into();
    }
    v
}

/// Identity of one response: id, creation time and model name, repeated in every chunk.
#[derive(Debug, Clone)]
pub struct Head {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Head {
    pub fn new(prefix: &str, model: &str) -> Self {
        let created =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let id: u64 = rand::random();
        Self { id: format!("{prefix}-{id:016x}"), created, model: model.to_string() }
    }

    fn object(&self, object: &str, choices: Value) -> Value {
        json!({"id": self.id, "object": object, "created": self.created, "model": self.model, "choices": choices})
    }

    /// A whole chat answer.
    pub fn chat_completion(&self, answer: &Answer, finish: Finish, usage: &Usage) -> Value {
        let calls: Vec<Value> = answer.tool_calls.iter().map(|c| tool_call_json(c, &tool_call_id(), None)).collect();
        let mut message = json!({"role": "assistant", "content": answer.content});
        if !calls.is_empty() {
            if answer.content.is_empty() {
                message["content"] = Value::Null;
            }
            message["tool_calls"] = Value::Array(calls);
        }
        if !answer.reasoning.is_empty() {
            message["reasoning_content"] = answer.reasoning.clone().into();
        }
        let choice = json!({
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(finish, !answer.tool_calls.is_empty()),
            "logprobs": null,
        });
        let mut v = self.object("chat.completion", json!([choice]));
        v["usage"] = usage_json(usage);
        v
    }

    /// A chat stream chunk with `delta` (and the finish reason on the last one).
    pub fn chat_chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        self.object(
            "chat.completion.chunk",
            json!([{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}]),
        )
    }

    /// The usage chunk that ends a stream with `stream_options.include_usage`.
    pub fn usage_chunk(&self, object: &str, usage: &Usage) -> Value {
        let mut v = self.object(object, json!([]));
        v["usage"] = usage_json(usage);
        v
    }

    pub fn text_completion(&self, text: &str, finish: Finish, usage: &Usage) -> Value {
        let choice = json!({"index": 0, "text": text, "finish_reason": finish_reason(finish, false), "logprobs": null});
        let mut v = self.object("text_completion", json!([choice]));
        v["usage"] = usage_json(usage);
        v
    }

    pub fn text_chunk(&self, text: &str, finish: Option<&str>) -> Value {
        self.object("text_completion", json!([{"index": 0, "text": text, "finish_reason": finish, "logprobs": null}]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            sampling: SamplingParams::default(),
            fixed_seed: true,
            max_tokens: None,
            template_kwargs: Map::new(),
        }
    }

    fn chat(body: Value) -> ApiResult<ChatRequest> {
        parse_chat(body.as_object().unwrap(), &defaults())
    }

    #[test]
    fn tool_call_arguments_strings_become_objects() {
        let r = chat(json!({"messages": [
            {"role": "developer", "content": "d"},
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1, \"b\": \"x\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"}
        ]}))
        .unwrap();
        assert_eq!(r.messages[0]["role"], "system");
        assert_eq!(r.messages[2]["content"], "");
        assert_eq!(r.messages[2]["tool_calls"][0]["function"]["arguments"], json!({"a": 1, "b": "x"}));
    }

    #[test]
    fn bad_requests_name_their_parameter() {
        let cases = [
            (json!({}), "messages", "missing_required_parameter"),
            (json!({"messages": []}), "messages", "invalid_value"),
            (json!({"messages": [{"role": "wizard", "content": "x"}]}), "messages[0].role", "invalid_value"),
            (json!({"messages": [{"role": "user"}]}), "messages[0].content", "missing_required_parameter"),
            (json!({"messages": [{"role": "user", "content": "x"}], "temperature": 3}), "temperature", "invalid_value"),
            (json!({"messages": [{"role": "user", "content": "x"}], "top_p": 0}), "top_p", "invalid_value"),
            (json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}), "max_tokens", "invalid_value"),
            (json!({"messages": [{"role": "user", "content": "x"}], "n": 2}), "n", "invalid_value"),
            (json!({"messages": [{"role": "user", "content": "x"}], "stop": 5}), "stop", "invalid_value"),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}),
                "tools[0]",
                "invalid_value",
            ),
            (
                json!({"messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}]}),
                "messages[0].tool_calls[0].function.arguments",
                "invalid_value",
            ),
        ];
        for (body, param, code) in cases {
            let e = chat(body.clone()).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
            assert_eq!(e.code, Some(code), "{body}");
        }
    }

    #[test]
    fn sampling_fields_and_thinking_switches() {
        let r = chat(json!({"messages": [{"role": "user", "content": "x"}], "temperature": 0.5, "top_k": -1,
            "min_p": 0.1, "seed": 42, "stop": ["a", "b"], "max_completion_tokens": 9, "tool_choice": "none",
            "tools": [{"type": "function", "function": {"name": "f"}}], "thinking": {"type": "disabled"},
            "chat_template_kwargs": {"clear_thinking": false}}))
        .unwrap();
        assert_eq!(r.common.sampling.temperature, 0.5);
        assert_eq!(r.common.sampling.top_k, 0);
        assert_eq!(r.common.sampling.seed, 42);
        assert_eq!(r.common.stop, ["a", "b"]);
        assert_eq!(r.common.max_tokens, Some(9));
        assert!(r.tools.is_none());
        assert_eq!(r.template_kwargs["enable_thinking"], false);
        assert_eq!(r.template_kwargs["clear_thinking"], false);
    }

    #[test]
    fn prompts() {
        let p = |v: Value| parse_prompt(json!({ "prompt": v }).as_object().unwrap());
        assert!(matches!(p(json!("hi")).unwrap(), Prompt::Text(s) if s == "hi"));
        assert!(matches!(p(json!(["hi"])).unwrap(), Prompt::Text(s) if s == "hi"));
        assert!(matches!(p(json!([1, 2])).unwrap(), Prompt::Ids(i) if i == [1, 2]));
        assert!(matches!(p(json!([[3]])).unwrap(), Prompt::Ids(i) if i == [3]));
        assert!(p(json!("")).is_err());
        assert!(p(json!(["a", "b"])).is_err());
        assert_eq!(parse_prompt(&Map::new()).unwrap_err().code, Some("missing_required_parameter"));
    }
}
