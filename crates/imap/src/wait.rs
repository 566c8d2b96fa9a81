//! The session calls the store's async interface from its synchronous
//! command handlers, which the service runs inside `block_in_place`: on
//! the server's multi-threaded runtime the call is driven by the runtime
//! (a PostgreSQL query's socket needs its reactor). Without one (property
//! tests, the fuzz target) the future is polled on this thread, which the
//! embedded back end answers without ever waiting.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Runs `f` to completion.
pub(crate) fn wait<F: Future>(f: F) -> F::Output {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            return tokio::task::block_in_place(|| handle.block_on(f));
        }
    }
    park_on(f)
}

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn park_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
