//! Splits what GLM-4.7 generates into reasoning (`…</think>`), visible content and tool calls
//! (`<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value>…</tool_call>`), incrementally: text
//! goes in as it is decoded, events come out as soon as they are certain.

use serde_json::{Map, Value};
use std::collections::HashMap;

const THINK: &str = "<think>";
const END_THINK: &str = "</think>";
const TOOL_CALL: &str = "<tool_call>";
const END_TOOL_CALL: &str = "</tool_call>";
const ARG_KEY: &str = "<arg_key>";
const END_ARG_KEY: &str = "</arg_key>";
const ARG_VALUE: &str = "<arg_value>";
const END_ARG_VALUE: &str = "</arg_value>";

/// A parsed tool call: the function's name and its arguments as a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub name: String,
    pub arguments: Map<String, Value>,
}

impl ToolCall {
    /// The arguments as OpenAI sends them: a JSON string.
    pub fn arguments_json(&self) -> String {
        serde_json::to_string(&self.arguments).expect("a JSON map serializes")
    }
}

/// One piece of the model's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Reasoning(String),
    Content(String),
    ToolCall(ToolCall),
}

/// Parameter types of the declared tools, to tell string arguments from JSON ones.
#[derive(Debug, Clone, Default)]
pub struct ToolSchemas {
    /// function name → parameter name → whether the schema says the parameter is a string.
    params: HashMap<String, HashMap<String, bool>>,
}

impl ToolSchemas {
    /// From OpenAI tool definitions (`{"type": "function", "function": {"name", "parameters"}}`).
    pub fn from_tools(tools: &[Value]) -> Self {
        let mut params = HashMap::new();
        for t in tools {
            let f = t.get("function").unwrap_or(t);
            let Some(name) = f.get("name").and_then(Value::as_str) else { continue };
            let mut types = HashMap::new();
            if let Some(props) = f.pointer("/parameters/properties").and_then(Value::as_object) {
                for (k, schema) in props {
                    let is_string = match schema.get("type") {
                        Some(Value::String(t)) => t == "string",
                        Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
                        _ => false,
                    };
                    types.insert(k.clone(), is_string);
                }
            }
            params.insert(name.to_string(), types);
        }
        Self { params }
    }

    /// An argument value as written between `<arg_value>` tags: kept as a string where the schema says
    /// string, else read as JSON when it is JSON (numbers, booleans, objects…), else kept as a string.
    pub fn value(&self, function: &str, key: &str, raw: &str) -> Value {
        let declared_string = self.params.get(function).and_then(|p| p.get(key)).copied().unwrap_or(false);
        if !declared_string {
            if let Ok(v) = serde_json::from_str::<Value>(raw.trim()) {
                return v;
            }
        }
        Value::String(raw.to_string())
    }
}

/// Parses the text inside `<tool_call>…</tool_call>`; `None` if it is not a well-formed call.
pub fn parse_tool_call(body: &str, schemas: &ToolSchemas) -> Option<ToolCall> {
    let (name, mut rest) = match body.find(ARG_KEY) {
        Some(i) => (body[..i].trim(), &body[i..]),
        None => (body.trim(), ""),
    };
    if name.is_empty() || name.contains('<') || name.contains('\n') {
        return None;
    }
    let mut arguments = Map::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let after_key = rest.strip_prefix(ARG_KEY)?;
        let (key, after) = after_key.split_once(END_ARG_KEY)?;
        let after_value = after.trim_start().strip_prefix(ARG_VALUE)?;
        let (value, after) = after_value.split_once(END_ARG_VALUE)?;
        let key = key.trim();
        arguments.insert(key.to_string(), schemas.value(name, key, value));
        rest = after;
    }
    Some(ToolCall { name: name.to_string(), arguments })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Reasoning,
    Content,
    ToolCall,
}

/// The incremental parser.
#[derive(Debug, Clone)]
pub struct OutputParser {
    state: State,
    buf: String,
    tools: Option<ToolSchemas>,
    /// Leading whitespace of a section (reasoning, content, text after a tool call) is dropped, as
    /// the template strips it.
    at_section_start: bool,
}

impl OutputParser {
    /// `in_reasoning`: the prompt ended inside `<think>` (thinking on). `tools`: parse tool calls
    /// (with these parameter types); `None` leaves `<tool_call>` text in the content.
    pub fn new(in_reasoning: bool, tools: Option<ToolSchemas>) -> Self {
        Self {
            state: if in_reasoning { State::Reasoning } else { State::Content },
            buf: String::new(),
            tools,
            at_section_start: true,
        }
    }

    fn tags(&self) -> &'static [&'static str] {
        match (self.state, self.tools.is_some()) {
            (State::Reasoning, _) => &[THINK, END_THINK],
            (State::Content, true) => &[THINK, END_THINK, TOOL_CALL],
            (State::Content, false) => &[THINK, END_THINK],
            (State::ToolCall, _) => &[END_TOOL_CALL],
        }
    }

    fn emit_text(&mut self, text: &str, out: &mut Vec<Event>) {
        let mut t = text;
        if self.at_section_start {
            t = t.trim_start();
            if t.is_empty() {
                return;
            }
            self.at_section_start = false;
        }
        match self.state {
            State::Reasoning => out.push(Event::Reasoning(t.to_string())),
            State::Content => out.push(Event::Content(t.to_string())),
            State::ToolCall => unreachable!("tool call text is buffered"),
        }
    }

    /// Feeds decoded text; returns the events it completes.
    pub fn push(&mut self, text: &str) -> Vec<Event> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        loop {
            let tags = self.tags();
            let found = tags.iter().filter_map(|t| self.buf.find(t).map(|i| (i, *t))).min_by_key(|&(i, _)| i);
            match found {
                Some((i, tag)) => {
                    let before = self.buf[..i].to_string();
                    let after = self.buf[i + tag.len()..].to_string();
                    self.buf = after;
                    self.on_tag(&before, tag, &mut out);
                }
                None => {
                    if self.state == State::ToolCall {
                        break;
                    }
                    // Let through all but a tail that may be the start of a tag.
                    let keep = self
                        .buf
                        .char_indices()
                        .map(|(i, _)| i)
                        .find(|&i| tags.iter().any(|t| t.starts_with(&self.buf[i..])))
                        .unwrap_or(self.buf.len());
                    let text: String = self.buf.drain(..keep).collect();
                    if !text.is_empty() {
                        self.emit_text(&text, &mut out);
                    }
                    break;
                }
            }
        }
        out
    }

    fn on_tag(&mut self, before: &str, tag: &str, out: &mut Vec<Event>) {
        match (self.state, tag) {
            (State::ToolCall, _) => {
                let schemas = self.tools.as_ref().expect("tool state needs schemas");
                match parse_tool_call(before, schemas) {
                    Some(call) => out.push(Event::ToolCall(call)),
                    // Not a call we understand: the text goes to the content as it was.
                    None => out.push(Event::Content(format!("{TOOL_CALL}{before}{END_TOOL_CALL}"))),
                }
                self.state = State::Content;
                self.at_section_start = true;
            }
            (_, THINK) => {
                // `<think>` opens reasoning (or repeats the one the prompt ended with).
                if !before.is_empty() {
                    self.emit_text(before, out);
                }
                if self.state != State::Reasoning {
                    self.state = State::Reasoning;
                    self.at_section_start = true;
                }
            }
            (_, END_THINK) => {
                if !before.is_empty() {
                    self.emit_text(before, out);
                }
                self.state = State::Content;
                self.at_section_start = true;
            }
            (State::Content, TOOL_CALL) => {
                if !before.is_empty() {
                    self.emit_text(before, out);
                }
                self.state = State::ToolCall;
            }
            _ => unreachable!("tag {tag} in state {:?}", self.state),
        }
    }

    /// The end of the generation: flushes held-back text. An unterminated tool call is returned as
    /// content, as it was written.
    pub fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.buf);
        match self.state {
            State::ToolCall => out.push(Event::Content(format!("{TOOL_CALL}{rest}"))),
            _ if !rest.is_empty() => self.emit_text(&rest, &mut out),
            _ => {}
        }
        out
    }
}

/// Reasoning, content and tool calls of a whole answer, concatenated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub reasoning: String,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
}

impl Answer {
    pub fn add(&mut self, e: Event) {
        match e {
            Event::Reasoning(s) => self.reasoning.push_str(&s),
            Event::Content(s) => self.content.push_str(&s),
            Event::ToolCall(c) => self.tool_calls.push(c),
        }
    }

    /// The assistant message to keep in a conversation's history (`arguments` as objects, as the
    /// template wants them).
    pub fn to_message(&self) -> Value {
        let mut m = Map::new();
        m.insert("role".into(), "assistant".into());
        m.insert("content".into(), self.content.clone().into());
        if !self.reasoning.is_empty() {
            m.insert("reasoning_content".into(), self.reasoning.clone().into());
        }
        if !self.tool_calls.is_empty() {
            let calls = self
                .tool_calls
                .iter()
                .map(
                    |c| serde_json::json!({"type": "function", "function": {"name": c.name, "arguments": c.arguments}}),
                )
                .collect();
            m.insert("tool_calls".into(), Value::Array(calls));
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schemas() -> ToolSchemas {
        ToolSchemas::from_tools(&[json!({"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "zip": {"type": "string"}}
        }}})])
    }

    /// Feeds `text` in pieces of `n` chars and merges adjacent events of one kind.
    fn parse_in_pieces(text: &str, n: usize, in_reasoning: bool, tools: Option<ToolSchemas>) -> Vec<Event> {
        let mut p = OutputParser::new(in_reasoning, tools);
        let chars: Vec<char> = text.chars().collect();
        let mut events = Vec::new();
        for chunk in chars.chunks(n) {
            events.extend(p.push(&chunk.iter().collect::<String>()));
        }
        events.extend(p.finish());
        let mut merged: Vec<Event> = Vec::new();
        for e in events {
            match (merged.last_mut(), e) {
                (Some(Event::Reasoning(a)), Event::Reasoning(b)) => a.push_str(&b),
                (Some(Event::Content(a)), Event::Content(b)) => a.push_str(&b),
                (_, e) => merged.push(e),
            }
        }
        merged
    }

    fn all_piece_sizes(text: &str, in_reasoning: bool, tools: Option<ToolSchemas>, want: &[Event]) {
        for n in [1, 2, 3, 5, 7, 1000] {
            assert_eq!(parse_in_pieces(text, n, in_reasoning, tools.clone()), want, "pieces of {n}");
        }
    }

    #[test]
    fn reasoning_then_content() {
        all_piece_sizes(
            "\nLet me think.\n</think>\n\nHello <b>world</b> 1 < 2",
            true,
            None,
            &[Event::Reasoning("Let me think.\n".into()), Event::Content("Hello <b>world</b> 1 < 2".into())],
        );
    }

    #[test]
    fn thinking_off_content_only() {
        all_piece_sizes("Just an answer.", false, Some(schemas()), &[Event::Content("Just an answer.".into())]);
        // A stray </think> when the prompt already closed thinking is dropped.
        all_piece_sizes("</think>Answer", false, None, &[Event::Content("Answer".into())]);
    }

    #[test]
    fn tool_calls_glm47_format() {
        let text = "I should check.</think><tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value>\
                    <arg_key>days</arg_key><arg_value>3</arg_value><arg_key>zip</arg_key><arg_value>75001</arg_value></tool_call>\n\
                    <tool_call>get_weather<arg_key>city</arg_key><arg_value>Rome, \"IT\"</arg_value></tool_call>";
        let want = [
            Event::Reasoning("I should check.".into()),
            Event::ToolCall(ToolCall {
                name: "get_weather".into(),
                arguments: json!({"city": "Paris", "days": 3, "zip": "75001"}).as_object().unwrap().clone(),
            }),
            Event::ToolCall(ToolCall {
                name: "get_weather".into(),
                arguments: json!({"city": "Rome, \"IT\""}).as_object().unwrap().clone(),
            }),
        ];
        all_piece_sizes(text, true, Some(schemas()), &want);
        if let Event::ToolCall(c) = &want[1] {
            assert_eq!(c.arguments_json(), r#"{"city":"Paris","days":3,"zip":"75001"}"#);
        }
    }

    #[test]
    fn tool_calls_glm45_layout_with_newlines_and_unknown_tool() {
        let text = "Sure.\n<tool_call>lookup\n<arg_key>q</arg_key>\n<arg_value>{\"a\": [1, 2]}</arg_value>\n\
                    <arg_key>n</arg_key>\n<arg_value>true</arg_value>\n<arg_key>s</arg_key>\n<arg_value>plain text</arg_value>\n</tool_call>";
        all_piece_sizes(
            text,
            false,
            Some(schemas()),
            &[
                Event::Content("Sure.\n".into()),
                Event::ToolCall(ToolCall {
                    name: "lookup".into(),
                    arguments: json!({"q": {"a": [1, 2]}, "n": true, "s": "plain text"}).as_object().unwrap().clone(),
                }),
            ],
        );
    }

    #[test]
    fn tool_call_without_arguments_and_text_after() {
        all_piece_sizes(
            "<tool_call>now</tool_call> done",
            false,
            Some(schemas()),
            &[Event::ToolCall(ToolCall { name: "now".into(), arguments: Map::new() }), Event::Content("done".into())],
        );
    }

    #[test]
    fn malformed_or_unterminated_calls_stay_content() {
        all_piece_sizes(
            "<tool_call>f<arg_key>k</arg_key>oops</tool_call>",
            false,
            Some(schemas()),
            &[Event::Content("<tool_call>f<arg_key>k</arg_key>oops</tool_call>".into())],
        );
        all_piece_sizes(
            "a <tool_call>f<arg_key>k",
            false,
            Some(schemas()),
            &[Event::Content("a <tool_call>f<arg_key>k".into())],
        );
    }

    #[test]
    fn tools_off_leaves_calls_in_content() {
        all_piece_sizes("<tool_call>f</tool_call>", false, None, &[Event::Content("<tool_call>f</tool_call>".into())]);
    }

    #[test]
    fn held_back_prefix_is_released() {
        let mut p = OutputParser::new(false, Some(schemas()));
        assert_eq!(p.push("a <tool"), vec![Event::Content("a ".into())]);
        assert_eq!(p.push("s>"), vec![Event::Content("<tools>".into())]);
        assert_eq!(p.push("</thin"), vec![]);
        assert_eq!(p.finish(), vec![Event::Content("</thin".into())]);
    }

    #[test]
    fn answer_to_history_message() {
        let mut a = Answer::default();
        for e in parse_in_pieces(
            "R</think>C<tool_call>get_weather<arg_key>city</arg_key><arg_value>X</arg_value></tool_call>",
            4,
            true,
            Some(schemas()),
        ) {
            a.add(e);
        }
        assert_eq!(
            a.to_message(),
            json!({"role": "assistant", "content": "C", "reasoning_content": "R",
                   "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "X"}}}]})
        );
    }
}
