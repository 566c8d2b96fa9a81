//! What every Postroom listener shares: per-client connection limits, the
//! PROXY protocol, a stream that may be upgraded to TLS, TLS configuration
//! and graceful shutdown. Protocol crates put their sans-IO cores on top.

pub mod acme;
pub mod limit;
pub mod proxy;
pub mod shutdown;
pub mod stream;
pub mod tls;

pub use limit::{ConnectionLimiter, ConnectionPermit};
pub use shutdown::Shutdown;
pub use stream::MaybeTls;
