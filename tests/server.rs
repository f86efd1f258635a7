//! The OpenAI-compatible server over real HTTP on 127.0.0.1: the tiny random-weight model on the GPU
//! (lavapipe in CI) for the protocol, queueing and cancellation; a scripted generator that replays
//! crafted model output (reasoning and GLM tool calls, as the real model writes them) for the
//! tool-call round trip, since the random model never emits a well-formed call by itself.

use glm_wgpu::chat::{ChatTemplate, RenderOptions};
use glm_wgpu::engine::{Engine, EngineOptions};
use glm_wgpu::generate::{GenerationStats, StopReason};
use glm_wgpu::gpu::GpuContext;
use glm_wgpu::model::Model;
use glm_wgpu::sampling::SamplingParams;
use glm_wgpu::server::api::Defaults;
use glm_wgpu::server::worker::{EngineGenerator, GenParams, Generator};
use glm_wgpu::server::{Server, ServerConfig};
use glm_wgpu::tokenizer::Tokenizer;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CTX: usize = 512;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/glm-tiny")
}

fn config(queue: usize) -> ServerConfig {
    ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        model_name: "glm-tiny".into(),
        queue,
        defaults: Defaults {
            sampling: SamplingParams { temperature: 1.0, top_p: 0.95, ..Default::default() },
            fixed_seed: false,
            max_tokens: None,
            template_kwargs: Default::default(),
        },
    }
}

fn template() -> ChatTemplate {
    ChatTemplate::from_model(&Model::open(&fixture()).unwrap()).unwrap()
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_hf_dir(fixture()).unwrap()
}

/// The tiny model on the GPU, with a context of `CTX` positions.
fn tiny_server(queue: usize) -> Server {
    let factory = Box::new(|| {
        let model = Model::open(&fixture())?;
        let ctx = GpuContext::new(None)?;
        let engine = Engine::load(ctx, &model, EngineOptions { ctx_len: CTX, ..Default::default() })?;
        Ok(Box::new(EngineGenerator::new(engine)) as Box<dyn Generator>)
    });
    Server::start(config(queue), tokenizer(), template(), factory).unwrap()
}

/// Replays `text` (tokenized, special tokens included) and then `<|observation|>`, whatever the prompt;
/// records the prompts it was given.
struct Scripted {
    ids: Vec<u32>,
    end: u32,
    prompts: Arc<Mutex<Vec<Vec<u32>>>>,
}

impl Generator for Scripted {
    fn ctx_len(&self) -> usize {
        CTX
    }

    fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenParams,
        on_token: &mut dyn FnMut(u32) -> anyhow::Result<bool>,
    ) -> anyhow::Result<GenerationStats> {
        self.prompts.lock().unwrap().push(prompt.to_vec());
        let mut generated = 0;
        let mut stop = StopReason::Length;
        for &id in self.ids.iter().chain([&self.end]) {
            if generated == params.max_tokens {
                break;
            }
            generated += 1;
            let go_on = on_token(id)?;
            if params.stop_ids.contains(&id) {
                stop = StopReason::Eos;
                break;
            }
            if !go_on {
                stop = StopReason::Caller;
                break;
            }
        }
        Ok(GenerationStats {
            prompt_tokens: prompt.len(),
            cached_tokens: 0,
            generated,
            prompt_time: Duration::ZERO,
            decode_time: Duration::ZERO,
            stop,
        })
    }
}

fn scripted_server(text: &str) -> (Server, Arc<Mutex<Vec<Vec<u32>>>>) {
    let tok = tokenizer();
    let ids = tok.encode(text).unwrap();
    let end = tok.token_id("<|observation|>").unwrap();
    let prompts = Arc::new(Mutex::new(Vec::new()));
    let p = prompts.clone();
    let factory = Box::new(move || Ok(Box::new(Scripted { ids, end, prompts: p }) as Box<dyn Generator>));
    (Server::start(config(4), tok, template(), factory).unwrap(), prompts)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// POSTs `body` (sent as written, so malformed JSON can be sent too); returns the status and body text.
fn post_raw(server: &Server, path: &str, body: &str) -> (u16, String) {
    let url = format!("http://{}{path}", server.addr());
    let mut r = agent().post(&url).header("content-type", "application/json").send(body).unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = post_raw(server, path, &body.to_string());
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

fn get(server: &Server, path: &str) -> (u16, Value) {
    let mut r = agent().get(&format!("http://{}{path}", server.addr())).call().unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    (r.status().as_u16(), serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

/// The `data:` payloads of a finished server-sent event stream.
fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n").filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")).map(str::to_string)).collect()
}

/// The JSON chunks of a stream, checking it ends with `[DONE]`.
fn stream_chunks(text: &str) -> Vec<Value> {
    let data = sse_data(text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect()
}

fn user(content: &str) -> Value {
    json!({"role": "user", "content": content})
}

/// Prompt tokens of `messages` as the server must have rendered them.
fn prompt_len(messages: &[Value], tools: Option<Vec<Value>>, kwargs: Value) -> usize {
    let opts =
        RenderOptions { tools, add_generation_prompt: true, kwargs: kwargs.as_object().cloned().unwrap_or_default() };
    tokenizer().encode(&template().render(messages, &opts).unwrap()).unwrap().len()
}

fn health(server: &Server) -> Value {
    get(server, "/health").1
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn chat_streamed_and_not_agree_and_reuse_the_cache() {
    let server = tiny_server(4);
    let messages = [json!({"role": "system", "content": "Be brief."}), user("Hello there!")];
    let body = json!({"model": "glm-tiny", "messages": messages, "max_tokens": 12, "temperature": 0});
    let (status, a) = post(&server, "/v1/chat/completions", &body);
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["object"], "chat.completion");
    assert_eq!(a["model"], "glm-tiny");
    assert!(a["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &a["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    let finish = choice["finish_reason"].as_str().unwrap();
    assert!(finish == "length" || finish == "stop", "{a}");
    let usage = &a["usage"];
    let n_prompt = prompt_len(&messages, None, json!({}));
    assert_eq!(usage["prompt_tokens"], n_prompt);
    let n_out = usage["completion_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&n_out), "{a}");
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), n_prompt as u64 + n_out);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    // Thinking is on by default: the answer is in reasoning_content until </think>.
    let reasoning = choice["message"]["reasoning_content"].as_str().unwrap_or("");
    let content = choice["message"]["content"].as_str().unwrap_or("");
    assert!(!(reasoning.is_empty() && content.is_empty() && finish == "length"), "{a}");

    // The same request again: the prompt comes from the cache but the last token, and greedy
    // decoding gives the same answer; streamed, the deltas add up to it.
    let mut body_stream = body.clone();
    body_stream["stream"] = true.into();
    body_stream["stream_options"] = json!({"include_usage": true});
    let (status, text) = post_raw(&server, "/v1/chat/completions", &body_stream.to_string());
    assert_eq!(status, 200, "{text}");
    let chunks = stream_chunks(&text);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let (mut r, mut c) = (String::new(), String::new());
    for ch in &chunks {
        assert_eq!(ch["object"], "chat.completion.chunk");
        assert_eq!(ch["id"], chunks[0]["id"]);
        if let Some(d) = ch["choices"].get(0).map(|x| &x["delta"]) {
            r.push_str(d["reasoning_content"].as_str().unwrap_or(""));
            c.push_str(d["content"].as_str().unwrap_or(""));
        }
    }
    assert_eq!((r.as_str(), c.as_str()), (reasoning, content));
    let last_choice = &chunks[chunks.len() - 2]["choices"][0];
    assert_eq!(last_choice["finish_reason"], finish);
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], n_out);
    assert_eq!(usage_chunk["usage"]["prompt_tokens_details"]["cached_tokens"], n_prompt - 1);

    // Thinking off: the prompt ends with </think> and nothing is reasoning.
    let body = json!({"messages": messages, "max_tokens": 6, "temperature": 0,
                      "chat_template_kwargs": {"enable_thinking": false}});
    let (status, a) = post(&server, "/v1/chat/completions", &body);
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["usage"]["prompt_tokens"], prompt_len(&messages, None, json!({"enable_thinking": false})));
    assert!(a["choices"][0]["message"].get("reasoning_content").is_none(), "{a}");
}

#[test]
fn completions_models_and_health() {
    let server = tiny_server(4);
    let (status, a) =
        post(&server, "/v1/completions", &json!({"prompt": "Once upon a time", "max_tokens": 5, "seed": 3}));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["object"], "text_completion");
    assert_eq!(a["usage"]["prompt_tokens"], tokenizer().encode("Once upon a time").unwrap().len());
    assert_eq!(a["usage"]["completion_tokens"], 5, "{a}");
    let text = a["choices"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(a["choices"][0]["finish_reason"], "length");
    // Same seed, same text; streamed, the pieces add up to it.
    let body = json!({"prompt": "Once upon a time", "max_tokens": 5, "seed": 3, "stream": true});
    let (status, t) = post_raw(&server, "/v1/completions", &body.to_string());
    assert_eq!(status, 200, "{t}");
    let chunks = stream_chunks(&t);
    let streamed: String = chunks.iter().map(|c| c["choices"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(streamed, text);
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");
    // Token ids as the prompt, ignore_eos to get exactly max_tokens.
    let (status, a) =
        post(&server, "/v1/completions", &json!({"prompt": [1502, 1504, 65, 66], "max_tokens": 3, "ignore_eos": true}));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["usage"]["prompt_tokens"], 4);
    assert_eq!(a["usage"]["completion_tokens"], 3);

    let (status, m) = get(&server, "/v1/models");
    assert_eq!(status, 200);
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["id"], "glm-tiny");
    assert_eq!(m["data"][0]["object"], "model");
    assert_eq!(get(&server, "/v1/models/glm-tiny").0, 200);
    let h = health(&server);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["served"], 3);
    assert_eq!(h["busy"], false);
}

/// An error response: the status and OpenAI's error object, with a non-empty message.
fn assert_error(server: &Server, method_path: (&str, &str), body: &str, status: u16, code: &str, kind: &str) -> Value {
    let url = format!("http://{}{}", server.addr(), method_path.1);
    let mut r = match method_path.0 {
        "POST" => agent().post(&url).send(body).unwrap(),
        "GET" => agent().get(&url).call().unwrap(),
        m => agent().put(&url).send(body).map_err(|e| format!("{m}: {e}")).unwrap(),
    };
    let text = r.body_mut().read_to_string().unwrap();
    assert_eq!(r.status().as_u16(), status, "{method_path:?} {body}: {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let e = &v["error"];
    assert_eq!(e["code"], code, "{body}: {text}");
    assert_eq!(e["type"], kind, "{body}: {text}");
    assert!(!e["message"].as_str().unwrap().is_empty());
    assert!(e.get("param").is_some());
    v
}

#[test]
fn errors_have_openai_shape_and_status() {
    let server = tiny_server(4);
    let chat = ("POST", "/v1/chat/completions");
    let bad = "invalid_request_error";
    let ok_msgs = json!([{"role": "user", "content": "hi"}]);
    assert_error(&server, chat, "{\"messages\": [", 400, "invalid_json", bad);
    assert_error(&server, chat, "[1, 2]", 400, "invalid_json", bad);
    assert_error(&server, chat, "{}", 400, "missing_required_parameter", bad);
    assert_error(&server, ("POST", "/v1/completions"), "{\"max_tokens\": 3}", 400, "missing_required_parameter", bad);
    let e = assert_error(
        &server,
        chat,
        &json!({"model": "gpt-4o", "messages": ok_msgs}).to_string(),
        404,
        "model_not_found",
        bad,
    );
    assert_eq!(e["error"]["param"], "model");
    assert_error(
        &server,
        ("POST", "/v1/completions"),
        &json!({"model": "x", "prompt": "a"}).to_string(),
        404,
        "model_not_found",
        bad,
    );
    // A prompt longer than the context (CTX tokens).
    let long = "word ".repeat(CTX * 2);
    let e = assert_error(
        &server,
        chat,
        &json!({"messages": [{"role": "user", "content": long}]}).to_string(),
        400,
        "context_length_exceeded",
        bad,
    );
    assert!(e["error"]["message"].as_str().unwrap().contains(&CTX.to_string()));
    assert_error(
        &server,
        ("POST", "/v1/completions"),
        &json!({"prompt": long}).to_string(),
        400,
        "context_length_exceeded",
        bad,
    );
    // Parameters out of range or of the wrong type.
    for (field, value) in [
        ("temperature", json!(2.5)),
        ("temperature", json!("hot")),
        ("top_p", json!(0)),
        ("top_p", json!(1.5)),
        ("top_k", json!(-2)),
        ("min_p", json!(1.5)),
        ("presence_penalty", json!(3)),
        ("frequency_penalty", json!(-2.5)),
        ("repetition_penalty", json!(0)),
        ("max_tokens", json!(0)),
        ("n", json!(3)),
        ("stop", json!([1, 2])),
        ("stream", json!("yes")),
        ("seed", json!(1.5)),
        ("tool_choice", json!("required")),
        ("tool_choice", json!({"type": "function", "function": {"name": "f"}})),
        ("tool_choice", json!("sometimes")),
    ] {
        let mut body = json!({"messages": ok_msgs});
        body[field] = value.clone();
        let e = assert_error(&server, chat, &body.to_string(), 400, "invalid_value", bad);
        assert_eq!(e["error"]["param"], field, "{field} = {value}");
    }
    assert_error(
        &server,
        ("POST", "/v1/completions"),
        &json!({"prompt": [1, 999999]}).to_string(),
        400,
        "invalid_value",
        bad,
    );
    assert_error(
        &server,
        chat,
        &json!({"messages": [{"role": "robot", "content": "x"}]}).to_string(),
        400,
        "invalid_value",
        bad,
    );
    assert_error(&server, ("GET", "/v1/nothing"), "", 404, "not_found", bad);
    assert_error(&server, ("GET", "/v1/chat/completions"), "", 405, "method_not_allowed", bad);
    assert_error(&server, ("GET", "/v1/models/other"), "", 404, "model_not_found", bad);
    // Nothing of that reached the engine.
    assert_eq!(health(&server)["served"], 0);
}

const WEATHER: &str = r#"{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"]}}}"#;

const CRAFTED: &str = "The user wants the weather.</think><tool_call>get_weather<arg_key>city</arg_key>\
    <arg_value>Paris</arg_value><arg_key>days</arg_key><arg_value>3</arg_value></tool_call>\
    <tool_call>get_weather<arg_key>city</arg_key><arg_value>Rome</arg_value></tool_call>";

#[test]
fn tool_call_round_trip_on_crafted_output() {
    let (server, prompts) = scripted_server(CRAFTED);
    let tools: Value = serde_json::from_str(&format!("[{WEATHER}]")).unwrap();
    let q = user("Weather in Paris and Rome?");
    let body = json!({"model": "glm-tiny", "messages": [q], "tools": tools});
    let (status, a) = post(&server, "/v1/chat/completions", &body);
    assert_eq!(status, 200, "{a}");
    let choice = &a["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{a}");
    let msg = &choice["message"];
    assert_eq!(msg["content"], Value::Null);
    assert_eq!(msg["reasoning_content"], "The user wants the weather.");
    let calls = msg["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    for c in calls {
        assert_eq!(c["type"], "function");
        assert!(c["id"].as_str().unwrap().starts_with("call_"));
    }
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    // Arguments are a JSON string; "days" is an integer in the schema, "city" a string.
    let args: Value = serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris", "days": 3}));
    let args: Value = serde_json::from_str(calls[1]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Rome"}));
    // <|observation|> ended the turn and was not shown; usage counts it.
    assert_eq!(a["usage"]["completion_tokens"], tokenizer().encode(CRAFTED).unwrap().len() + 1);

    // Streamed: reasoning deltas, then one delta per call with index, id, name and arguments.
    let mut sbody = body.clone();
    sbody["stream"] = true.into();
    let (status, text) = post_raw(&server, "/v1/chat/completions", &sbody.to_string());
    assert_eq!(status, 200, "{text}");
    let chunks = stream_chunks(&text);
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    let reasoning: String = deltas.iter().filter_map(|d| d["reasoning_content"].as_str()).collect();
    assert_eq!(reasoning, "The user wants the weather.");
    let streamed_calls: Vec<&Value> =
        deltas.iter().filter_map(|d| d.get("tool_calls")).flat_map(|c| c.as_array().unwrap()).collect();
    assert_eq!(streamed_calls.len(), 2);
    for (i, c) in streamed_calls.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["function"]["name"], "get_weather");
        assert_eq!(c["function"]["arguments"], calls[i]["function"]["arguments"]);
    }
    assert!(deltas.iter().all(|d| d["content"].as_str().unwrap_or("").is_empty()));
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");

    // The client runs the tools and sends the results back, as the openai client does: the assistant
    // message with its tool_calls (arguments as strings), then one tool message per call.
    let mut history = vec![q.clone(), msg.clone()];
    history.push(json!({"role": "tool", "tool_call_id": calls[0]["id"], "content": "18°C, sunny"}));
    history.push(json!({"role": "tool", "tool_call_id": calls[1]["id"], "content": "21°C"}));
    let (status, b) = post(&server, "/v1/chat/completions", &json!({"messages": history, "tools": tools}));
    assert_eq!(status, 200, "{b}");
    // The prompt the generator got is the template's rendering of that history with the arguments as
    // objects, reasoning kept (it follows the last user turn), and the tool results after <|observation|>.
    let last_prompt = prompts.lock().unwrap().last().unwrap().clone();
    let rendered = tokenizer().decode(&last_prompt);
    let want_tail = "<|user|>Weather in Paris and Rome?<|assistant|><think>The user wants the weather.</think>\
        <tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value><arg_key>days</arg_key><arg_value>3</arg_value></tool_call>\
        <tool_call>get_weather<arg_key>city</arg_key><arg_value>Rome</arg_value></tool_call>\
        <|observation|><tool_response>18°C, sunny</tool_response><tool_response>21°C</tool_response><|assistant|><think>";
    assert!(rendered.starts_with("[gMASK]<sop><|system|>\n# Tools"), "{rendered}");
    assert!(rendered.contains(r#""name": "get_weather""#), "{rendered}");
    assert!(rendered.ends_with(want_tail), "{rendered}");

    // tool_choice "none": the tools are neither declared to the model nor parsed.
    let (status, c) =
        post(&server, "/v1/chat/completions", &json!({"messages": [q], "tools": tools, "tool_choice": "none"}));
    assert_eq!(status, 200);
    let p = tokenizer().decode(prompts.lock().unwrap().last().unwrap());
    assert!(!p.contains("# Tools"), "{p}");
    assert!(c["choices"][0]["message"]["content"].as_str().unwrap().starts_with("<tool_call>get_weather"), "{c}");
    assert_eq!(c["choices"][0]["finish_reason"], "stop");
}

#[test]
fn stop_strings_end_the_answer() {
    let (server, _) = scripted_server("Thinking.</think>Alpha beta STOP gamma");
    let body = json!({"messages": [user("x")], "stop": ["STOP", "zzz"], "stream": true});
    let (status, text) = post_raw(&server, "/v1/chat/completions", &body.to_string());
    assert_eq!(status, 200);
    let chunks = stream_chunks(&text);
    let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, "Alpha beta ");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
}

#[test]
fn tools_and_tool_results_reach_the_tiny_model() {
    let server = tiny_server(4);
    let tools: Value = serde_json::from_str(&format!("[{WEATHER}]")).unwrap();
    let messages = vec![
        user("Weather in Paris?"),
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
               "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}),
        json!({"role": "tool", "tool_call_id": "call_1", "content": "18°C"}),
    ];
    let body = json!({"messages": messages, "tools": tools, "max_tokens": 4, "temperature": 0, "stream": true});
    let (status, text) = post_raw(&server, "/v1/chat/completions", &body.to_string());
    assert_eq!(status, 200, "{text}");
    let chunks = stream_chunks(&text);
    assert!(chunks.last().unwrap()["choices"][0]["finish_reason"].is_string());
    // The same conversation, non-streamed, with usage: the prompt is the rendering with arguments as objects.
    let (status, a) =
        post(&server, "/v1/chat/completions", &json!({"messages": messages, "tools": tools, "max_tokens": 4}));
    assert_eq!(status, 200, "{a}");
    let mut as_objects = messages.clone();
    as_objects[1]["content"] = "".into();
    as_objects[1]["tool_calls"][0]["function"]["arguments"] = json!({"city": "Paris"});
    assert_eq!(a["usage"]["prompt_tokens"], prompt_len(&as_objects, tools.as_array().cloned(), json!({})));
}

#[test]
fn concurrent_clients_are_all_answered() {
    let server = tiny_server(8);
    let url = format!("http://{}/v1/chat/completions", server.addr());
    let prompts = ["Tell me a story.", "What is a GPU?"];
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let url = url.clone();
            let body =
                json!({"messages": [user(prompts[i % 2])], "max_tokens": 8, "temperature": 0, "stream": i % 3 == 0});
            std::thread::spawn(move || {
                let mut r = agent().post(&url).send(body.to_string()).unwrap();
                (i, r.status().as_u16(), r.body_mut().read_to_string().unwrap())
            })
        })
        .collect();
    let mut answers: Vec<Option<String>> = vec![None; 2];
    for h in handles {
        let (i, status, text) = h.join().unwrap();
        assert_eq!(status, 200, "client {i}: {text}");
        // Greedy: every client asking the same thing gets the same answer, however the requests
        // interleaved in the queue and whatever the KV cache held before.
        let answer = if i % 3 == 0 {
            stream_chunks(&text)
                .iter()
                .filter_map(|c| c["choices"].get(0).map(|c| c["delta"].clone()))
                .map(|d| {
                    format!("{}{}", d["reasoning_content"].as_str().unwrap_or(""), d["content"].as_str().unwrap_or(""))
                })
                .collect::<String>()
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            let m = &v["choices"][0]["message"];
            format!("{}{}", m["reasoning_content"].as_str().unwrap_or(""), m["content"].as_str().unwrap_or(""))
        };
        match &answers[i % 2] {
            None => answers[i % 2] = Some(answer),
            Some(a) => assert_eq!(a, &answer, "client {i}"),
        }
    }
    let h = health(&server);
    assert_eq!(h["served"], 6);
    assert_eq!(h["cancelled"], 0);
    assert_eq!(h["queued"], 0);
}

/// Sends a streaming request by hand and returns the socket after the response head and the first
/// `n` data lines.
fn open_stream(server: &Server, body: &Value, n: usize) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.to_string();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut seen = 0;
    while seen < n {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "stream ended early");
        if line.contains("data: ") {
            seen += 1;
        }
    }
    r
}

#[test]
fn disconnect_mid_stream_cancels_the_generation() {
    let server = tiny_server(4);
    // Without the disconnect this would run to the end of the context (~500 tokens, about 10 s on
    // lavapipe) and count as served.
    let body = json!({"messages": [user("Go on forever.")], "max_tokens": 4000, "ignore_eos": true, "stream": true});
    let conn = open_stream(&server, &body, 5);
    assert_eq!(health(&server)["busy"], true);
    let t0 = Instant::now();
    conn.into_inner().shutdown(std::net::Shutdown::Both).unwrap();
    wait_until("the cancelled generation to stop", Duration::from_secs(20), || health(&server)["busy"] == false);
    let h = health(&server);
    assert_eq!(h["cancelled"], 1, "{h}");
    assert_eq!(h["served"], 0, "{h}");
    assert!(t0.elapsed() < Duration::from_secs(5), "the generation ran on for {:?}", t0.elapsed());
    // The engine is free for the next client.
    let (status, a) = post(&server, "/v1/chat/completions", &json!({"messages": [user("Hi")], "max_tokens": 2}));
    assert_eq!(status, 200, "{a}");
}

#[test]
fn queue_bound_is_enforced() {
    let server = tiny_server(2);
    // One long generation (to the end of the context) holds the engine…
    let long = json!({"messages": [user("Go on forever.")], "max_tokens": 4000, "ignore_eos": true, "stream": true});
    let conn = open_stream(&server, &long, 2);
    // …two more requests wait in the queue…
    let url = format!("http://{}/v1/chat/completions", server.addr());
    let waiting: Vec<_> = (0..2)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let body = json!({"messages": [user(&format!("Question {i}"))], "max_tokens": 3});
                let mut r = agent().post(&url).send(body.to_string()).unwrap();
                (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
            })
        })
        .collect();
    wait_until("two queued requests", Duration::from_secs(20), || health(&server)["queued"] == 2);
    // …and the next one is turned away at once.
    let t0 = Instant::now();
    let e = assert_error(
        &server,
        ("POST", "/v1/chat/completions"),
        &json!({"messages": [user("One more")]}).to_string(),
        429,
        "queue_full",
        "rate_limit_error",
    );
    assert!(e["error"]["message"].as_str().unwrap().contains('2'));
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Ending the long one lets the queued ones through, in order, none lost.
    drop(conn);
    for w in waiting {
        let (status, text) = w.join().unwrap();
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["usage"]["completion_tokens"].as_u64().map(|n| n <= 3), Some(true), "{v}");
    }
    let h = health(&server);
    assert_eq!(
        (h["served"].as_u64(), h["cancelled"].as_u64(), h["queued"].as_u64()),
        (Some(2), Some(1), Some(0)),
        "{h}"
    );
}

#[test]
fn serve_command_listens_and_answers() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_glm-wgpu"))
        .args(["serve", "-m", fixture().to_str().unwrap(), "--port", "0", "--ctx", "128", "--model-name", "tiny"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let mut log = String::new();
    let mut line = String::new();
    while addr.is_none() && err.read_line(&mut line).unwrap() > 0 {
        log.push_str(&line);
        addr = line.split("http://").nth(1).and_then(|a| a.split_whitespace().next()).map(str::to_string);
        line.clear();
    }
    let addr = addr.unwrap_or_else(|| panic!("no address in: {log}"));
    let mut r = agent().get(&format!("http://{addr}/v1/models")).call().unwrap();
    let models: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    let body = json!({"model": "tiny", "messages": [user("Hi")], "max_tokens": 2});
    let mut r = agent().post(&format!("http://{addr}/v1/chat/completions")).send(body.to_string()).unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let mut rest = String::new();
    let _ = err.read_to_string(&mut rest);
    assert_eq!(models["data"][0]["id"], "tiny", "{log}{rest}");
    assert_eq!(status, 200, "{text}");
}
