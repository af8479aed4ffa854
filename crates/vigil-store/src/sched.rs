//! CPU priority of the store's background threads.
//!
//! Spans Vigil produces itself (gateway calls) are written by threads that compete for the same
//! cores as the requests being proxied. Run at normal priority, a commit that is underway delays a
//! request that wakes up meanwhile by up to a scheduler slice (milliseconds, the gateway's whole
//! latency budget). Under `SCHED_IDLE` the kernel runs such a thread only on CPU time nothing else
//! wants, and preempts it as soon as a request thread wakes. Background work is deferred, never
//! starved: the span sink returns to normal priority once its backlog builds up, and a background
//! write still unacknowledged after a while has the writer promoted (`Promoter`). Only writes
//! nobody waits on run in the background; an OTLP export's commit always runs at normal priority.

/// Puts the calling thread in the background (`SCHED_IDLE`) or back to normal (`SCHED_OTHER`,
/// nice 0). Best effort: a refusal leaves the thread as it was.
#[cfg(target_os = "linux")]
pub(crate) fn set_background(on: bool) {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
        ThreadPriority, ThreadPriorityOsValue, ThreadSchedulePolicy,
    };
    let policy = ThreadSchedulePolicy::Normal(if on {
        NormalThreadSchedulePolicy::Idle
    } else {
        NormalThreadSchedulePolicy::Other
    });
    let nice_zero = ThreadPriority::Os(ThreadPriorityOsValue::default());
    if let Err(e) = set_thread_priority_and_policy(thread_native_id(), nice_zero, policy) {
        tracing::debug!(error = ?e, "could not change a store thread's CPU priority");
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn set_background(_on: bool) {}

/// Remembers the calling thread's priority so that it is changed only when it differs.
#[derive(Default)]
pub(crate) struct Priority {
    background: bool,
}

impl Priority {
    pub(crate) fn set(&mut self, background: bool) {
        if self.background != background {
            set_background(background);
            self.background = background;
        }
    }
}

/// Lets another thread put a background thread back to normal priority: a background write that
/// is not done after a while is promoted, so a CPU kept busy by requests delays it but never
/// starves it.
#[derive(Default)]
pub(crate) struct Promoter {
    /// The thread's pthread id, once it has registered (0: not yet).
    thread: std::sync::atomic::AtomicU64,
}

impl Promoter {
    /// Called by the thread that may later be promoted.
    pub(crate) fn register_current(&self) {
        #[cfg(target_os = "linux")]
        self.thread.store(
            thread_priority::thread_native_id() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub(crate) fn promote(&self) {
        #[cfg(target_os = "linux")]
        {
            use thread_priority::{
                set_thread_priority_and_policy, NormalThreadSchedulePolicy, ThreadPriority,
                ThreadPriorityOsValue, ThreadSchedulePolicy,
            };
            let id = self.thread.load(std::sync::atomic::Ordering::Relaxed);
            if id == 0 {
                return;
            }
            let normal = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
            let nice_zero = ThreadPriority::Os(ThreadPriorityOsValue::default());
            if let Err(e) = set_thread_priority_and_policy(id as _, nice_zero, normal) {
                tracing::debug!(error = ?e, "could not promote a background store thread");
            }
        }
    }
}
