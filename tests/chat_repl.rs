//! `glm-wgpu chat` driven through a pseudo-terminal, as a person would use it: type a turn, read the
//! streamed answer (reasoning dimmed), a second turn that reuses the KV cache, Ctrl-C during an
//! answer, `/reset`, `/exit`.

use glm_wgpu::tokenizer::Tokenizer;
use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/glm-tiny")
}

/// Everything the program wrote to the terminal, read on a thread.
struct Terminal {
    out: Arc<Mutex<Vec<u8>>>,
    writer: Box<dyn Write + Send>,
    /// How much of `out` earlier `expect` calls consumed.
    seen: usize,
}

/// The text without ANSI escape sequences (`ESC [ … letter`), and for each of its bytes the position
/// just after it in `s`.
fn strip_ansi_map(s: &str) -> (String, Vec<usize>) {
    let mut out = String::new();
    let mut ends = Vec::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\x1b' {
            for (_, d) in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
            ends.extend(std::iter::repeat_n(i + c.len_utf8(), c.len_utf8()));
        }
    }
    (out, ends)
}

fn strip_ansi(s: &str) -> String {
    strip_ansi_map(s).0
}

impl Terminal {
    fn raw(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Waits until `want` appears (colours stripped) after what earlier calls consumed; returns the
    /// raw output from there to the end of `want`.
    fn expect(&mut self, want: &str, timeout: Duration) -> String {
        let t0 = Instant::now();
        loop {
            let raw = self.out.lock().unwrap()[self.seen..].to_vec();
            let raw = String::from_utf8_lossy(&raw).into_owned();
            let (text, ends) = strip_ansi_map(&raw);
            if let Some(i) = text.find(want) {
                let cut = ends[i + want.len() - 1];
                self.seen += cut;
                return raw[..cut].to_string();
            }
            assert!(t0.elapsed() < timeout, "timed out waiting for {want:?}; the terminal shows:\n{}", self.raw());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, s: &str) {
        self.writer.write_all(s.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }
}

/// Starts `glm-wgpu chat -m <tiny model> args…` in a pseudo-terminal (so colours are on).
fn spawn_chat(args: &[&str]) -> (Terminal, Box<dyn portable_pty::Child + Send + Sync>) {
    let pair = native_pty_system().openpty(PtySize { rows: 50, cols: 200, pixel_width: 0, pixel_height: 0 }).unwrap();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_glm-wgpu"));
    cmd.args(["chat", "-m", fixture().to_str().unwrap()]);
    cmd.args(args);
    cmd.env_remove("NO_COLOR");
    let child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    {
        let out = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
    }
    (Terminal { out, writer: pair.master.take_writer().unwrap(), seen: 0 }, child)
}

fn stat_numbers(line: &str) -> (usize, usize) {
    // "[prompt: N new tokens, M cached | …"
    let after = line.rsplit("[prompt: ").next().unwrap();
    let mut words = after.split_whitespace();
    let new: usize = words.next().unwrap().parse().unwrap();
    let cached: usize = after.split(", ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    (new, cached)
}

#[test]
fn chat_in_a_terminal() {
    let (mut t, mut child) = spawn_chat(&["--temp", "0", "-n", "12", "--ctx", "1024"]);
    let long = Duration::from_secs(60);
    t.expect("chat with", long);
    t.expect("> ", long);

    // First turn: the answer streams, the reasoning (the prompt ends in <think>) dimmed.
    t.send("Hello\r");
    let answer = t.expect("[prompt: ", long);
    let stats = t.expect("]", long);
    let (new, cached) = stat_numbers(&format!("[prompt: {stats}"));
    let tok = Tokenizer::from_hf_dir(fixture()).unwrap();
    assert_eq!(cached, 0);
    assert_eq!(new, tok.encode("[gMASK]<sop><|user|>Hello<|assistant|><think>").unwrap().len());
    assert!(stats.contains("answer: 12 tokens") || stats.contains("stop: eos"), "{stats}");
    assert!(answer.contains("\x1b[2;3m"), "reasoning is not dimmed: {answer:?}");
    assert!(strip_ansi(&answer).trim().len() > "Hello".len(), "no answer: {answer:?}");
    t.expect("> ", long);

    // Second turn: only the new turn (and the last answer token, never run) goes through the model.
    t.send("How are you?\r");
    t.expect("[prompt: ", long);
    let stats = t.expect("]", long);
    let (new, cached) = stat_numbers(&format!("[prompt: {stats}"));
    let turn = tok.encode("<|user|>How are you?<|assistant|><think>").unwrap().len();
    assert_eq!(new, turn + 1, "{stats}");
    assert!(cached > turn, "{stats}");
    t.expect("> ", long);

    // /reset forgets the conversation and the cache; /think turns thinking off.
    t.send("/reset\r");
    t.expect("(new conversation)", long);
    t.expect("> ", long);
    t.send("/think\r");
    t.expect("(thinking off)", long);
    t.expect("> ", long);
    t.send("Hi\r");
    let stats = {
        t.expect("[prompt: ", long);
        t.expect("]", long)
    };
    let (new, cached) = stat_numbers(&format!("[prompt: {stats}"));
    assert_eq!(cached, 0, "after /reset nothing is cached: {stats}");
    assert_eq!(new, tok.encode("[gMASK]<sop><|user|>Hi<|assistant|></think>").unwrap().len(), "{stats}");
    t.expect("> ", long);

    t.send("/exit\r");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < long, "chat did not exit:\n{}", t.raw());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}\n{}", t.raw());
}

#[test]
fn ctrl_c_stops_an_answer_not_the_session() {
    let (mut t, mut child) = spawn_chat(&["--temp", "0", "--ignore-eos", "--no-think", "--ctx", "4096"]);
    let long = Duration::from_secs(60);
    t.expect("> ", long);
    // Up to 4000 tokens (a minute and more on lavapipe) unless interrupted.
    t.send("Tell me everything.\r");
    t.expect("Tell me everything.", long);
    let t0 = Instant::now();
    // Wait for some of the answer, then Ctrl-C (the terminal turns it into SIGINT).
    while strip_ansi(&t.raw()).split("Tell me everything.").nth(1).map_or(0, |s| s.trim().len()) < 20 {
        assert!(t0.elapsed() < long, "no answer:\n{}", t.raw());
        std::thread::sleep(Duration::from_millis(20));
    }
    t.send("\x03");
    t.expect("[interrupted]", Duration::from_secs(20));
    let stats = {
        t.expect("[prompt: ", long);
        t.expect("]", long)
    };
    assert!(stats.contains("stop: caller"), "{stats}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    // Still alive: the next turn is answered from the cache.
    t.expect("> ", long);
    t.send("/exit\r");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", t.raw());
}
