//! A panic in an HTTP handler of the xDS listener answers 500 and the server keeps serving
//! (the same layer as weft-api's `catch_panics`, which this crate does not depend on). The
//! control plane is built with `panic = "unwind"`; ADS streams run in their own tasks, so a
//! panic there ends only that stream.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

/// `router` with every handler's panic turned into a 500.
pub fn catch_panics(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(catch))
}

async fn catch(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    match CatchUnwind(Box::pin(next.run(request))).await {
        Ok(response) => response,
        Err(payload) => {
            let reason = panic_message(payload.as_ref());
            tracing::error!(%method, %path, %reason, "a request handler panicked; answered 500");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error while handling {method} {path}\n"),
            )
                .into_response()
        }
    }
}

/// The text of a panic payload (`&str` or `String`), else a placeholder.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a non-string panic payload)".into())
}

/// Polls the inner future inside `catch_unwind`.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(move || inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}
