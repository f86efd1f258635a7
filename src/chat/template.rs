//! The model's own Jinja chat template, rendered with minijinja the way transformers'
//! `apply_chat_template` renders it (jinja2 with `trim_blocks` and `lstrip_blocks`, Python string and
//! dict methods, and transformers' `tojson`, which is Python's `json.dumps`).

use crate::gguf::GgufFile;
use crate::model::{Checkpoint, Model};
use anyhow::{anyhow, bail, Context, Result};
use minijinja::value::{Kwargs, Serde};
use minijinja::{Environment, Error, ErrorKind, Value as JValue};
use serde_json::{Map, Value};
use std::path::Path;

const NAME: &str = "chat_template";

/// A loaded chat template, ready to render conversations.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Where it came from, for error messages.
    pub origin: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("origin", &self.origin).finish_non_exhaustive()
    }
}

/// What one rendering needs besides the messages.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// OpenAI-style tool definitions (`{"type": "function", "function": {...}}`), passed as `tools`.
    pub tools: Option<Vec<Value>>,
    /// End with the assistant's turn opening (`<|assistant|><think>` for GLM-4.7).
    pub add_generation_prompt: bool,
    /// Further template variables, e.g. `enable_thinking` or `clear_thinking` (vLLM's
    /// `chat_template_kwargs`).
    pub kwargs: Map<String, Value>,
}

impl ChatTemplate {
    /// Compiles `source`; `origin` names where it came from.
    pub fn new(source: &str, origin: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", |msg: String| -> Result<JValue, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| anyhow!("{}", describe(&e)))
            .with_context(|| format!("cannot compile the chat template of {origin}"))?;
        Ok(Self { env, origin: origin.to_string() })
    }

    /// Reads a template file (plain Jinja text).
    pub fn from_file(path: &Path) -> Result<Self> {
        let source = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the chat template {}", path.display()))?;
        Self::new(&source, &path.display().to_string())
    }

    /// The template the model file carries: `tokenizer.chat_template` in a GGUF file; in a Hugging Face
    /// directory `chat_template.jinja`, else `chat_template` in `tokenizer_config.json`.
    pub fn from_model(model: &Model) -> Result<Self> {
        let found = match &model.files {
            Checkpoint::Gguf(g) => from_gguf(g)?,
            Checkpoint::Hf(_) => from_hf_dir(&model.path)?,
        };
        match found {
            Some((source, origin)) => Self::new(&source, &origin),
            None => bail!(
                "{} has no chat template ({}); pass one with --chat-template FILE",
                model.path.display(),
                match model.files {
                    Checkpoint::Gguf(_) => "no tokenizer.chat_template metadata",
                    Checkpoint::Hf(_) => "no chat_template.jinja and no chat_template in tokenizer_config.json",
                }
            ),
        }
    }

    /// `--chat-template FILE` when given, else the model's own.
    pub fn load(model: &Model, file: Option<&Path>) -> Result<Self> {
        match file {
            Some(f) => Self::from_file(f),
            None => Self::from_model(model),
        }
    }

    /// Renders a conversation (`messages` as in OpenAI's API: objects with `role`, `content`, and for
    /// the assistant optionally `reasoning_content` and `tool_calls` whose `arguments` are objects).
    pub fn render(&self, messages: &[Value], opts: &RenderOptions) -> Result<String> {
        let mut ctx = Map::new();
        ctx.insert("messages".into(), Value::Array(messages.to_vec()));
        ctx.insert("tools".into(), opts.tools.clone().map(Value::Array).unwrap_or(Value::Null));
        ctx.insert("add_generation_prompt".into(), Value::Bool(opts.add_generation_prompt));
        for (k, v) in &opts.kwargs {
            ctx.insert(k.clone(), v.clone());
        }
        let tmpl = self.env.get_template(NAME).expect("added in new");
        tmpl.render(JValue::from(Serde(Value::Object(ctx))))
            .map_err(|e| anyhow!("cannot render the chat template of {}: {}", self.origin, describe(&e)))
    }
}

/// A minijinja error with its causes and place, on one line.
fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(&format!(": {c}"));
        src = c.source();
    }
    s
}

fn from_gguf(g: &GgufFile) -> Result<Option<(String, String)>> {
    match g.get("tokenizer.chat_template") {
        Some(v) => {
            let s = v.as_str().context("tokenizer.chat_template")?;
            Ok(Some((s.to_string(), format!("{} (tokenizer.chat_template)", g.path.display()))))
        }
        None => Ok(None),
    }
}

fn from_hf_dir(dir: &Path) -> Result<Option<(String, String)>> {
    let file = dir.join("chat_template.jinja");
    if file.exists() {
        let s = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        return Ok(Some((s, file.display().to_string())));
    }
    let cfg = dir.join("tokenizer_config.json");
    if !cfg.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&cfg).with_context(|| format!("cannot read {}", cfg.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", cfg.display()))?;
    let origin = format!("{} (chat_template)", cfg.display());
    Ok(match v.get("chat_template") {
        Some(Value::String(s)) => Some((s.clone(), origin)),
        // A list of named templates: the one named "default".
        Some(Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template").and_then(Value::as_str))
            .map(|s| (s.to_string(), origin)),
        _ => None,
    })
}

/// transformers' `tojson` filter: Python's `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)` with its keyword arguments.
fn tojson(value: JValue, kwargs: Kwargs) -> Result<JValue, Error> {
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let indent: Option<JValue> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Some(" ".repeat(n.max(0) as usize)),
            (None, Some(s)) => Some(s.to_string()),
            _ => return Err(Error::new(ErrorKind::InvalidOperation, "tojson: indent must be an int or a string")),
        },
    };
    let (item_sep, key_sep) = match separators.as_deref() {
        Some([a, b]) => (a.clone(), b.clone()),
        Some(_) => return Err(Error::new(ErrorKind::InvalidOperation, "tojson: separators must be a pair")),
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let v =
        serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let style = PyJson {
        ensure_ascii: ensure_ascii.unwrap_or(false),
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    style.write(&v, 0, &mut out);
    Ok(JValue::from_safe_string(out))
}

/// Python `json.dumps` formatting.
pub struct PyJson {
    pub ensure_ascii: bool,
    pub indent: Option<String>,
    pub item_sep: String,
    pub key_sep: String,
    pub sort_keys: bool,
}

impl Default for PyJson {
    fn default() -> Self {
        Self { ensure_ascii: false, indent: None, item_sep: ", ".into(), key_sep: ": ".into(), sort_keys: false }
    }
}

impl PyJson {
    /// `json.dumps(v, ensure_ascii=False)`.
    pub fn dumps(v: &Value) -> String {
        let mut out = String::new();
        Self::default().write(v, 0, &mut out);
        out
    }

    fn newline(&self, level: usize, out: &mut String) {
        if let Some(ind) = &self.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    }

    fn write(&self, v: &Value, level: usize, out: &mut String) {
        match v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => {
                if n.is_f64() {
                    let f = n.as_f64().unwrap_or(0.0);
                    out.push_str(&py_float(f));
                } else {
                    out.push_str(&n.to_string());
                }
            }
            Value::String(s) => self.string(s, out),
            Value::Array(a) => {
                if a.is_empty() {
                    out.push_str("[]");
                    return;
                }
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(level + 1, out);
                    self.write(x, level + 1, out);
                }
                self.newline(level, out);
                out.push(']');
            }
            Value::Object(m) => {
                if m.is_empty() {
                    out.push_str("{}");
                    return;
                }
                let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, x)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(level + 1, out);
                    self.string(k, out);
                    out.push_str(&self.key_sep);
                    self.write(x, level + 1, out);
                }
                self.newline(level, out);
                out.push('}');
            }
        }
    }

    fn string(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !c.is_ascii()) => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form outside [1e-4, 1e16).
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        // `{:e}` gives the shortest digits as d.ddde±x; Python writes e+XX / e-XX with two digits.
        let s = format!("{f:e}");
        let (mant, exp) = s.split_once('e').expect("exponent form");
        let exp: i32 = exp.parse().expect("exponent");
        return format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    let s = format!("{f}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_json_formatting() {
        let v = json!({"a": [1, 2.5, "x\"y\n", null, true], "é": {}, "b": [], "c": 1e20, "d": 0.0001, "e": 1.0});
        assert_eq!(
            PyJson::dumps(&v),
            r#"{"a": [1, 2.5, "x\"y\n", null, true], "é": {}, "b": [], "c": 1e+20, "d": 0.0001, "e": 1.0}"#
        );
        let ascii = PyJson { ensure_ascii: true, ..Default::default() };
        let mut out = String::new();
        ascii.write(&json!("é🙂\u{1}"), 0, &mut out);
        assert_eq!(out, r#""\u00e9\ud83d\ude42\u0001""#);
    }

    #[test]
    fn tojson_kwargs_and_indent() {
        let t = ChatTemplate::new(
            "{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ x | tojson(sort_keys=true, separators=[',', ':']) }}",
            "test",
        )
        .unwrap();
        let opts = RenderOptions {
            kwargs: json!({"x": {"b": 1, "a": [1]}}).as_object().unwrap().clone(),
            ..Default::default()
        };
        assert_eq!(
            t.render(&[], &opts).unwrap(),
            "{\"b\": 1, \"a\": [1]}|{\n  \"b\": 1,\n  \"a\": [\n    1\n  ]\n}|{\"a\":[1],\"b\":1}"
        );
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t = ChatTemplate::new("{{ raise_exception('no system role') }}", "test").unwrap();
        let e = t.render(&[], &RenderOptions::default()).unwrap_err().to_string();
        assert!(e.contains("no system role"), "{e}");
    }

    #[test]
    fn syntax_error_is_reported() {
        let e = ChatTemplate::new("{% if %}", "bad.jinja").unwrap_err();
        assert!(format!("{e:#}").contains("bad.jinja"), "{e:#}");
    }
}
