//! The HTTP-01 responder (RFC 8555 8.3): the CA fetches
//! `http://NAME/.well-known/acme-challenge/TOKEN` on port 80 and expects
//! the key authorization. Every other request gets a 404; bodies are never
//! read. hyper does the HTTP, with a header-read timeout so an idle or slow
//! client cannot hold a connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::Challenges;
use crate::shutdown::Shutdown;

const PREFIX: &str = "/.well-known/acme-challenge/";

/// The answer to one request.
pub fn answer(challenges: &Challenges, method: &hyper::Method, path: &str) -> (StatusCode, String) {
    if method != hyper::Method::GET && method != hyper::Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, String::new());
    }
    match path.strip_prefix(PREFIX).and_then(|t| challenges.http_answer(t)) {
        Some(key_auth) => (StatusCode::OK, key_auth),
        None => (StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// Serves the challenges on `listener` until shutdown.
pub async fn serve(listener: TcpListener, challenges: Arc<Challenges>, mut stop: Shutdown) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.recv() => return,
        };
        let Ok((tcp, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let challenges = Arc::clone(&challenges);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (status, body) = answer(&challenges, req.method(), req.uri().path());
                tracing::info!(target: "acme", client = %peer.ip(), path = req.uri().path(),
                    status = status.as_u16(), "HTTP-01 request");
                let mut rsp = Response::new(Full::new(Bytes::from(body)));
                *rsp.status_mut() = status;
                rsp.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("text/plain"),
                );
                async move { Ok::<_, Infallible>(rsp) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_published_tokens_are_answered() {
        let c = Challenges::default();
        c.http.write().unwrap().insert("tok".into(), "tok.thumb".into());
        let get = hyper::Method::GET;
        assert_eq!(
            answer(&c, &get, "/.well-known/acme-challenge/tok"),
            (StatusCode::OK, "tok.thumb".into())
        );
        assert_eq!(
            answer(&c, &get, "/.well-known/acme-challenge/other").0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            answer(&c, &get, "/.well-known/acme-challenge/../tok").0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(answer(&c, &get, "/").0, StatusCode::NOT_FOUND);
        assert_eq!(
            answer(&c, &hyper::Method::POST, "/.well-known/acme-challenge/tok").0,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
