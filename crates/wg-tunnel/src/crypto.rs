//! The crypto pool: transport AEAD of a batch spread over the cores, fork-join.
//!
//! A [`Pool`] has a fixed set of worker threads, spawned once when the event loop starts (so
//! they inherit its reduced capabilities). For each batch the event loop (the *owner*) fills a
//! [`Jobs`] list (each job: one message's bytes in the batch's arena, a key, a counter, seal
//! or open) and calls [`Jobs::run`], which returns when every job is done:
//!
//! * small batches (fewer than [`INLINE_JOBS`] jobs or [`INLINE_BYTES`] bytes) run inline on
//!   the owner, waking nobody, so a lone ping never waits for a thread hand-off;
//! * otherwise the owner publishes the jobs, unparks the workers, and everyone (the owner
//!   too) claims chunks of [`CHUNK`] jobs with a compare-and-swap on one atomic word holding
//!   the batch's generation, its size and the next unclaimed index; each finished chunk is
//!   added to a done counter, and whoever completes the last chunk unparks the owner, which
//!   spins briefly and then parks until every claimed chunk is done.
//!
//! No lock is taken on this path, and nothing allocates once the job list has grown to the
//! largest batch. Idle workers park (a futex wait) and never spin. Packet order is untouched:
//! results are read back in batch order after the join, and the owner sends and delivers in
//! that order.
//!
//! Safety: a job holds raw pointers into buffers and to a key that the [`Jobs`] list borrows
//! for its lifetime `'a` (so they are disjoint `&mut` slices and live keys), and
//! [`Jobs::run`] does not return until no thread touches them any more. Workers only
//! dereference a job after claiming its index in the current generation, and a generation
//! cannot end (nor its job list be replaced) while a claimed chunk is unfinished.
//!
//! The number of workers is `available_parallelism() - 1` (the owner is the remaining one), or
//! the environment variable `WG_TUNNEL_THREADS` (0: all crypto on the event-loop thread).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle, Thread};

use wg_proto::session::{open_in_place, seal_in_place, TransportKey};

/// Batches with fewer jobs than this run inline on the owner.
pub const INLINE_JOBS: usize = 8;
/// Batches with fewer bytes than this run inline on the owner.
pub const INLINE_BYTES: usize = 16 * 1024;
/// Jobs claimed at a time.
pub const CHUNK: usize = 4;
/// At most this many jobs in one run (the size field of the shared word).
pub const MAX_JOBS: usize = 0xffff;
/// The most workers `WG_TUNNEL_THREADS` may ask for.
pub const MAX_WORKERS: usize = 64;
/// How many times the owner checks for completion before parking.
const OWNER_SPINS: u32 = 2_000;

/// One AEAD operation on `len` bytes at `buf`.
#[derive(Debug)]
struct RawJob {
    buf: *mut u8,
    len: usize,
    key: *const TransportKey,
    counter: u64,
    open: bool,
    /// The plaintext length (open) or `len` (seal) on success.
    result: Option<usize>,
}

impl RawJob {
    /// Runs the job.
    ///
    /// # Safety
    ///
    /// `buf..buf + len` must be valid for writes and not accessed by anyone else, and `key`
    /// must point to a live key, for the duration of the call.
    unsafe fn execute(&mut self) {
        // SAFETY: guaranteed by the caller (the Jobs list borrows both for its lifetime).
        let (buf, key) = unsafe {
            (
                std::slice::from_raw_parts_mut(self.buf, self.len),
                &*self.key,
            )
        };
        self.result = if self.open {
            open_in_place(key, self.counter, buf).ok()
        } else {
            seal_in_place(key, self.counter, buf)
                .ok()
                .map(|()| self.len)
        };
    }
}

/// What the owner and the workers share.
#[derive(Debug)]
struct Shared {
    /// `generation << 32 | jobs << 16 | next unclaimed`.
    state: AtomicU64,
    /// The current generation's jobs.
    jobs: AtomicPtr<RawJob>,
    /// Jobs finished in the current generation.
    done: AtomicUsize,
    shutdown: AtomicBool,
    /// The thread that runs batches, unparked by whoever finishes the last chunk.
    owner: Thread,
}

const fn pack(generation: u64, jobs: usize, next: usize) -> u64 {
    generation << 32 | (jobs as u64) << 16 | next as u64
}

impl Shared {
    /// Claims and runs chunks of generation `generation` until none is left. Returns
    /// whether this thread finished the generation's last chunk.
    fn work(&self, generation: u64) -> bool {
        loop {
            let state = self.state.load(Ordering::Acquire);
            let jobs = (state >> 16 & 0xffff) as usize;
            let next = (state & 0xffff) as usize;
            if state >> 32 != generation || next >= jobs {
                return false;
            }
            let end = (next + CHUNK).min(jobs);
            if self
                .state
                .compare_exchange_weak(
                    state,
                    pack(generation, jobs, end),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
            {
                continue;
            }
            let base = self.jobs.load(Ordering::Acquire);
            for i in next..end {
                // SAFETY: indices next..end of this generation are ours alone (claimed by the
                // successful compare-and-swap), and the generation (its job list, buffers and
                // keys) cannot end before `done` counts them, below.
                unsafe { (*base.add(i)).execute() };
            }
            let finished = end - next;
            if self.done.fetch_add(finished, Ordering::AcqRel) + finished == jobs {
                return true;
            }
        }
    }
}

/// A fixed set of crypto worker threads and the owner's reusable job list.
#[derive(Debug)]
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<(Thread, JoinHandle<()>)>,
    jobs: Vec<RawJob>,
    generation: u64,
}

impl Pool {
    /// A pool with `workers` threads besides the calling thread, which becomes the owner
    /// (the only thread that may run batches).
    pub fn new(workers: usize) -> Pool {
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            jobs: AtomicPtr::new(std::ptr::null_mut()),
            done: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            owner: thread::current(),
        });
        let mut pool = Pool {
            shared,
            workers: Vec::new(),
            jobs: Vec::new(),
            generation: 0,
        };
        for i in 0..workers.min(MAX_WORKERS) {
            let shared = pool.shared.clone();
            let spawned = thread::Builder::new()
                .name(format!("wg-crypto-{i}"))
                .stack_size(256 * 1024)
                .spawn(move || worker(&shared));
            match spawned {
                Ok(handle) => pool.workers.push((handle.thread().clone(), handle)),
                // Fewer workers is slower, not wrong.
                Err(_) => break,
            }
        }
        pool
    }

    /// A pool sized from `WG_TUNNEL_THREADS` (workers; 0 for none) or, when unset or not a
    /// number, one worker per available core but the owner's.
    pub fn from_env() -> Pool {
        Pool::new(workers_from(
            std::env::var("WG_TUNNEL_THREADS").ok().as_deref(),
        ))
    }

    /// How many worker threads run.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// An empty job list for one batch, borrowing buffers and keys for `'a`.
    pub fn jobs<'a>(&'a mut self) -> Jobs<'a> {
        self.jobs.clear();
        Jobs {
            pool: self,
            bytes: 0,
            _borrows: PhantomData,
        }
    }

    /// The outcome of job `i` of the last run: `Some(len)` on success (the plaintext length
    /// for an open, the message length for a seal), `None` if it failed.
    pub fn result(&self, i: usize) -> Option<usize> {
        self.jobs.get(i).and_then(|j| j.result)
    }

    fn run(&mut self, bytes: usize) {
        let n = self.jobs.len();
        if self.workers.is_empty() || n < INLINE_JOBS || bytes < INLINE_BYTES {
            for job in &mut self.jobs {
                // SAFETY: the Jobs list that filled `jobs` borrows every buffer and key and
                // is still alive (this runs from `Jobs::run`).
                unsafe { job.execute() };
            }
            return;
        }
        // The pool is not `Send` (its job list holds raw pointers), so this is the thread that
        // created it, the one the workers unpark.
        self.generation = (self.generation + 1) & 0xffff_ffff;
        let generation = self.generation;
        let shared = &*self.shared;
        shared.done.store(0, Ordering::Relaxed);
        shared.jobs.store(self.jobs.as_mut_ptr(), Ordering::Release);
        shared
            .state
            .store(pack(generation, n, 0), Ordering::Release);
        for (thread, _) in &self.workers {
            thread.unpark();
        }
        shared.work(generation);
        let mut spins = 0;
        while shared.done.load(Ordering::Acquire) != n {
            if spins < OWNER_SPINS {
                spins += 1;
                std::hint::spin_loop();
            } else {
                thread::park();
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        for (thread, _) in &self.workers {
            thread.unpark();
        }
        for (_, handle) in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

/// The worker count for a `WG_TUNNEL_THREADS` value (`None`: unset).
fn workers_from(env: Option<&str>) -> usize {
    match env.and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(n) => n.min(MAX_WORKERS),
        None => thread::available_parallelism()
            .map_or(1, |n| n.get())
            .saturating_sub(1),
    }
}

fn worker(shared: &Shared) {
    let mut seen = 0;
    loop {
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        let generation = shared.state.load(Ordering::Acquire) >> 32;
        if generation == seen {
            thread::park();
            continue;
        }
        seen = generation;
        if shared.work(generation) {
            shared.owner.unpark();
        }
    }
}

/// The jobs of one batch, borrowing their buffers and keys for `'a`.
#[derive(Debug)]
pub struct Jobs<'a> {
    pool: &'a mut Pool,
    bytes: usize,
    _borrows: PhantomData<(&'a mut [u8], &'a TransportKey)>,
}

impl<'a> Jobs<'a> {
    fn push(&mut self, buf: &'a mut [u8], key: &'a TransportKey, counter: u64, open: bool) {
        if self.pool.jobs.len() >= MAX_JOBS {
            // Beyond the shared word's size field: never reached with the loop's batches.
            return;
        }
        self.bytes += buf.len();
        self.pool.jobs.push(RawJob {
            buf: buf.as_mut_ptr(),
            len: buf.len(),
            key,
            counter,
            open,
            result: None,
        });
    }

    /// Adds a seal: `buf` is a padded plaintext followed by 16 bytes for the tag.
    pub fn seal(&mut self, buf: &'a mut [u8], key: &'a TransportKey, counter: u64) {
        self.push(buf, key, counter, false);
    }

    /// Adds an open: `buf` is a ciphertext followed by its tag.
    pub fn open(&mut self, buf: &'a mut [u8], key: &'a TransportKey, counter: u64) {
        self.push(buf, key, counter, true);
    }

    /// How many jobs were added.
    pub fn len(&self) -> usize {
        self.pool.jobs.len()
    }

    /// Whether no job was added.
    pub fn is_empty(&self) -> bool {
        self.pool.jobs.is_empty()
    }

    /// Runs every job, spread over the pool when the batch is big enough; returns when all
    /// are done. Read the outcomes with [`Pool::result`].
    pub fn run(self) {
        let bytes = self.bytes;
        self.pool.run(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: a deterministic sequence for the stress test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn test_workers_from_env() {
        assert_eq!(workers_from(Some("0")), 0);
        assert_eq!(workers_from(Some(" 3 ")), 3);
        assert_eq!(workers_from(Some("1000")), MAX_WORKERS);
        let default = workers_from(None);
        assert_eq!(workers_from(Some("many")), default);
    }

    // Many batches of random sizes (some inline, most spread), sealing then opening in place,
    // each compared with the same operations done serially; a forged message fails alone.
    #[test]
    fn test_stress_matches_serial() {
        let keys = [TransportKey::new(&[1; 32]), TransportKey::new(&[2; 32])];
        let mut pool = Pool::new(3);
        assert_eq!(pool.workers(), 3);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut bufs: Vec<Vec<u8>> = Vec::new();
        for round in 0..600 {
            let n = match round % 3 {
                0 => rng.below(INLINE_JOBS),
                _ => rng.below(200) + 1,
            };
            bufs.clear();
            for i in 0..n {
                let len = 16 + rng.below(1500);
                bufs.push((0..len).map(|b| (b ^ i ^ round) as u8).collect());
            }
            let mut expected = bufs.clone();
            for (i, buf) in expected.iter_mut().enumerate() {
                seal_in_place(&keys[i % 2], (round * 1000 + i) as u64, buf).unwrap();
            }
            let mut jobs = pool.jobs();
            for (i, buf) in bufs.iter_mut().enumerate() {
                jobs.seal(buf, &keys[i % 2], (round * 1000 + i) as u64);
            }
            jobs.run();
            for (i, buf) in bufs.iter().enumerate() {
                assert_eq!(pool.result(i), Some(buf.len()), "round {round} job {i}");
            }
            assert_eq!(bufs, expected, "round {round}: sealed bytes");
            let forged = if n > 0 { rng.below(n) } else { 0 };
            if n > 0 {
                bufs[forged][0] ^= 1;
            }
            let mut jobs = pool.jobs();
            for (i, buf) in bufs.iter_mut().enumerate() {
                jobs.open(buf, &keys[i % 2], (round * 1000 + i) as u64);
            }
            jobs.run();
            for (i, buf) in bufs.iter().enumerate() {
                if i == forged {
                    assert_eq!(pool.result(i), None, "round {round} forged {i}");
                } else {
                    let len = buf.len() - 16;
                    assert_eq!(pool.result(i), Some(len));
                    let plain: Vec<u8> = (0..len).map(|b| (b ^ i ^ round) as u8).collect();
                    assert_eq!(&buf[..len], &plain[..], "round {round} job {i}");
                }
            }
        }
    }

    // Disjoint pieces of one buffer (as several datagrams in one GRO slot) are separate jobs.
    #[test]
    fn test_jobs_in_one_buffer() {
        let key = TransportKey::new(&[7; 32]);
        let mut pool = Pool::new(1);
        let mut arena = vec![0x42u8; 64 * 1000];
        let mut expected = arena.clone();
        for (i, piece) in expected.chunks_mut(1000).enumerate() {
            seal_in_place(&key, i as u64, piece).unwrap();
        }
        let mut jobs = pool.jobs();
        for (i, piece) in arena.chunks_mut(1000).enumerate() {
            jobs.seal(piece, &key, i as u64);
        }
        assert_eq!(jobs.len(), 64);
        jobs.run();
        assert_eq!(arena, expected);
    }

    #[test]
    fn test_no_workers_runs_inline_and_drop_joins() {
        let key = TransportKey::new(&[7; 32]);
        let mut pool = Pool::new(0);
        let mut bufs = vec![vec![0u8; 2000]; 32];
        let mut jobs = pool.jobs();
        for buf in &mut bufs {
            jobs.seal(buf, &key, 1);
        }
        jobs.run();
        assert!((0..32).all(|i| pool.result(i) == Some(2000)));
        drop(Pool::new(2));
    }
}
