//! The engine thread: one generation at a time, taken from a bounded first-come-first-served queue.
//! The engine never leaves its thread; requests reach it as [`Job`]s and answers come back as
//! [`JobEvent`]s on a channel per request. A request whose channel is closed (the client went away) is
//! skipped if it is still queued and stopped at its next token if it is running.

use crate::chat::{Event, OutputParser, OutputStream, Session};
use crate::engine::Engine;
use crate::generate::{GenerateRequest, GenerationStats, StopReason};
use crate::sampling::SamplingParams;
use crate::tokenizer::Tokenizer;
use anyhow::Result;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use tokio::sync::mpsc::UnboundedSender;

/// What one generation is asked for, at the token level.
#[derive(Debug, Clone)]
pub struct GenParams {
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    /// Token ids that end the generation (the model's end-of-sequence ids, unless ignored).
    pub stop_ids: Vec<u32>,
}

/// Something that generates tokens: the engine with its KV cache in the server, or a scripted stand-in
/// in tests. It lives on the engine thread only.
pub trait Generator {
    /// Positions the KV cache holds: a prompt must be shorter.
    fn ctx_len(&self) -> usize;
    /// Generates after `prompt`, calling `on_token` with each token; `on_token` returns false to stop.
    fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenParams,
        on_token: &mut dyn FnMut(u32) -> Result<bool>,
    ) -> Result<GenerationStats>;
}

/// Builds the generator on the engine thread (GPU objects are created where they are used).
pub type GeneratorFactory = Box<dyn FnOnce() -> Result<Box<dyn Generator>> + Send>;

/// The real model: the engine and the tokens its KV cache holds, reused by the next request that starts
/// with them (a conversation that goes on only runs its new turn).
pub struct EngineGenerator {
    engine: Engine,
    session: Session,
}

impl EngineGenerator {
    pub fn new(engine: Engine) -> Self {
        Self { engine, session: Session::new() }
    }
}

impl Generator for EngineGenerator {
    fn ctx_len(&self) -> usize {
        self.engine.ctx_len()
    }

    fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenParams,
        on_token: &mut dyn FnMut(u32) -> Result<bool>,
    ) -> Result<GenerationStats> {
        let req = GenerateRequest {
            prompt,
            max_new: params.max_tokens,
            sampling: params.sampling.clone(),
            stop_ids: &params.stop_ids,
        };
        self.session.generate(&mut self.engine, &req, on_token)
    }
}

/// One request for the engine thread.
pub struct Job {
    pub prompt: Vec<u32>,
    pub params: GenParams,
    /// Splits chat output into reasoning, content and tool calls; `None` for raw completions.
    pub parser: Option<OutputParser>,
    pub stop_strings: Vec<String>,
    pub events: UnboundedSender<JobEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` or the context.
    Length,
}

#[derive(Debug, Clone)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub cached_tokens: usize,
    pub completion_tokens: usize,
}

#[derive(Debug, Clone)]
pub enum JobEvent {
    Delta(Event),
    Done(Finish, Usage),
    Error(String),
}

/// Counters for `/health`.
#[derive(Debug, Default)]
pub struct Stats {
    pub busy: AtomicBool,
    pub served: AtomicU64,
    pub cancelled: AtomicU64,
}

/// [`Queue::push`] found no room.
#[derive(Debug, Clone, Copy)]
pub struct QueueFull;

/// The bounded queue of jobs waiting for the engine.
pub struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
    cap: usize,
    closed: AtomicBool,
    pub stats: Stats,
}

impl Queue {
    pub fn new(cap: usize) -> Self {
        Self {
            jobs: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            cap: cap.max(1),
            closed: AtomicBool::new(false),
            stats: Stats::default(),
        }
    }

    /// Queues `job`, or drops it when `cap` jobs are already waiting (or the queue is closed). Jobs whose
    /// client went away are dropped first and hold no place.
    pub fn push(&self, job: Job) -> Result<(), QueueFull> {
        let mut q = self.jobs.lock().expect("queue lock");
        let before = q.len();
        q.retain(|j| !j.events.is_closed());
        self.stats.cancelled.fetch_add((before - q.len()) as u64, Ordering::Relaxed);
        if q.len() >= self.cap || self.closed.load(Ordering::Relaxed) {
            return Err(QueueFull);
        }
        q.push_back(job);
        self.ready.notify_one();
        Ok(())
    }

    /// Jobs waiting (not counting the one generating).
    pub fn len(&self) -> usize {
        self.jobs.lock().expect("queue lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The oldest job, waiting for one; `None` once closed.
    fn pop(&self) -> Option<Job> {
        let mut q = self.jobs.lock().expect("queue lock");
        loop {
            if self.closed.load(Ordering::Relaxed) {
                return None;
            }
            if let Some(j) = q.pop_front() {
                return Some(j);
            }
            q = self.ready.wait(q).expect("queue lock");
        }
    }

    /// Stops the engine thread after its current job; queued jobs are dropped (their clients see the
    /// connection end).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.jobs.lock().expect("queue lock").clear();
        self.ready.notify_all();
    }
}

/// The engine thread's loop.
pub fn run(queue: Arc<Queue>, tokenizer: Arc<Tokenizer>, mut generator: Box<dyn Generator>) {
    while let Some(job) = queue.pop() {
        if job.events.is_closed() {
            queue.stats.cancelled.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        queue.stats.busy.store(true, Ordering::Relaxed);
        run_job(generator.as_mut(), &tokenizer, job, &queue.stats);
    }
}

/// Runs one job. The counters are updated before the last event goes out, so a client that has its
/// answer sees them include it.
fn run_job(generator: &mut dyn Generator, tokenizer: &Tokenizer, job: Job, stats: &Stats) {
    let Job { prompt, params, parser, stop_strings, events } = job;
    let mut out = OutputStream::new(parser, stop_strings, &params.stop_ids);
    let mut gone = false;
    let result = generator.generate(&prompt, &params, &mut |id| {
        for e in out.push_token(tokenizer, id) {
            gone |= events.send(JobEvent::Delta(e)).is_err();
        }
        gone |= events.is_closed();
        Ok(!gone && !out.stopped())
    });
    let last = match result {
        Ok(s) => {
            for e in out.finish() {
                let _ = events.send(JobEvent::Delta(e));
            }
            let finish = match s.stop {
                StopReason::Length | StopReason::Context if !out.stopped() => Finish::Length,
                _ => Finish::Stop,
            };
            let usage = Usage {
                prompt_tokens: s.prompt_tokens,
                cached_tokens: s.cached_tokens,
                completion_tokens: s.generated,
            };
            JobEvent::Done(finish, usage)
        }
        Err(e) => JobEvent::Error(format!("{e:#}")),
    };
    let counter = if gone { &stats.cancelled } else { &stats.served };
    counter.fetch_add(1, Ordering::Relaxed);
    stats.busy.store(false, Ordering::Relaxed);
    let _ = events.send(last);
}
