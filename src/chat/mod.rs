//! Chat on top of the token loop: the model's own chat template, the split of generated text into
//! reasoning, content and tool calls, and a session that keeps the KV cache between turns.

pub mod parse;
pub mod session;
pub mod template;

pub use parse::{Answer, Event, OutputParser, ToolCall, ToolSchemas};
pub use session::Session;
pub use template::{ChatTemplate, RenderOptions};

use crate::generate::StopStrings;
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Generated token ids in, events out: decoding (UTF-8 held back across tokens), stop strings, then
/// the reasoning/content/tool-call split (or plain content for raw completions).
#[derive(Debug, Clone)]
pub struct OutputStream {
    decoder: StreamDecoder,
    stops: StopStrings,
    parser: Option<OutputParser>,
    hidden: Vec<u32>,
}

impl OutputStream {
    /// `parser`: `None` for raw text. `stops`: stop strings. `hidden`: ids whose text is never shown
    /// (the end-of-sequence tokens).
    pub fn new(parser: Option<OutputParser>, stops: Vec<String>, hidden: &[u32]) -> Self {
        Self { decoder: StreamDecoder::new(), stops: StopStrings::new(stops), parser, hidden: hidden.to_vec() }
    }

    fn parse(&mut self, text: String) -> Vec<Event> {
        if text.is_empty() {
            return Vec::new();
        }
        match &mut self.parser {
            Some(p) => p.push(&text),
            None => vec![Event::Content(text)],
        }
    }

    /// The events token `id` completes.
    pub fn push_token(&mut self, tok: &Tokenizer, id: u32) -> Vec<Event> {
        if self.hidden.contains(&id) || self.stops.hit() {
            return Vec::new();
        }
        let piece = self.decoder.step(tok, id);
        let text = self.stops.push(&piece);
        self.parse(text)
    }

    /// Whether a stop string ended the text (the generation should stop).
    pub fn stopped(&self) -> bool {
        self.stops.hit()
    }

    /// Flushes everything held back, at the end of the generation.
    pub fn finish(&mut self) -> Vec<Event> {
        let tail = self.decoder.finish();
        let mut text = self.stops.push(&tail);
        if !self.stops.hit() {
            text.push_str(&self.stops.finish());
        }
        let mut out = self.parse(text);
        if let Some(p) = &mut self.parser {
            out.extend(p.finish());
        }
        out
    }
}
