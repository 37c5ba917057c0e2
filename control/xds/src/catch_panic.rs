//! A panic in an HTTP handler answers 500 and the server keeps serving. The control plane is
//! built with `panic = "unwind"` (the workspace release profile); without this layer a
//! panicking handler would only drop its connection, with it the caller learns what happened.
//! ADS streams run in their own tasks, so a panic there ends only that stream.
//!
//! Used by the xDS listener ([`catch_panics`]: a plain-text 500) and by weft-api
//! ([`catch_panics_with`] its JSON error body).

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

/// `router` with every handler's panic turned into a plain-text 500.
pub fn catch_panics(router: Router) -> Router {
    catch_panics_with(router, |message| {
        (StatusCode::INTERNAL_SERVER_ERROR, format!("{message}\n")).into_response()
    })
}

/// `router` with every handler's panic turned into `answer(message)`, where `message` is
/// "internal error while handling {method} {path}"; `answer` picks the status and body.
pub fn catch_panics_with(router: Router, answer: fn(String) -> Response) -> Router {
    router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| catch(request, next, answer),
    ))
}

async fn catch(request: Request, next: Next, answer: fn(String) -> Response) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    match CatchUnwind(Box::pin(next.run(request))).await {
        Ok(response) => response,
        Err(payload) => {
            let reason = panic_message(payload.as_ref());
            tracing::error!(%method, %path, %reason, "a request handler panicked; answered 500");
            answer(format!("internal error while handling {method} {path}"))
        }
    }
}

/// The text of a panic payload (`&str` or `String`), else a placeholder.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    /// Serves `wrap(router)` with a panicking `/boom` and a fine `/ok`; returns `/boom`'s
    /// body after checking it answered 500 and `/ok` is still served.
    async fn boom_then_ok(wrap: fn(Router) -> Router) -> String {
        let router = wrap(
            Router::new()
                .route(
                    "/boom",
                    get(|| async {
                        if std::hint::black_box(true) {
                            panic!("boom");
                        }
                        "unreached"
                    }),
                )
                .route("/ok", get(|| async { "fine" })),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let get = |path: &'static str| {
            tokio::task::spawn_blocking(move || {
                let agent = ureq::Agent::new_with_config(
                    ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .build(),
                );
                let mut response = agent.get(format!("http://{addr}{path}")).call().unwrap();
                let status = response.status().as_u16();
                (status, response.body_mut().read_to_string().unwrap())
            })
        };
        let (status, body) = get("/boom").await.unwrap();
        assert_eq!(status, 500);
        for _ in 0..3 {
            assert_eq!(get("/ok").await.unwrap(), (200, "fine".to_string()));
        }
        body
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_next_request_is_served() {
        let body = boom_then_ok(catch_panics).await;
        assert_eq!(body, "internal error while handling GET /boom\n");
    }

    #[tokio::test]
    async fn the_answer_to_a_panic_is_the_callers() {
        let body = boom_then_ok(|router| {
            catch_panics_with(router, |message| {
                (StatusCode::INTERNAL_SERVER_ERROR, format!("<{message}>")).into_response()
            })
        })
        .await;
        assert_eq!(body, "<internal error while handling GET /boom>");
    }
}
