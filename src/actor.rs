//! The request-and-reply call every actor handle makes: send a command
//! carrying a `oneshot` sender over the actor's bounded channel, then await
//! the reply. One task owns the state; handles only call it.
//!
//! Imports: tokio only, so every module may use it.

use tokio::sync::{mpsc, oneshot};

/// The actor's task has ended: the command was not taken, or it dropped
/// the reply sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended;

/// Sends `make(reply)` to the actor behind `tx` and waits for the reply.
pub(crate) async fn call<C, R>(
    tx: &mpsc::Sender<C>,
    make: impl FnOnce(oneshot::Sender<R>) -> C,
) -> Result<R, Ended> {
    let (reply, rx) = oneshot::channel();
    tx.send(make(reply)).await.map_err(|_| Ended)?;
    rx.await.map_err(|_| Ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_and_reports_an_ended_actor() {
        let (tx, mut rx) = mpsc::channel::<oneshot::Sender<u32>>(1);
        let actor = tokio::spawn(async move {
            if let Some(reply) = rx.recv().await {
                let _ = reply.send(7);
            }
        });
        assert_eq!(call(&tx, |r| r).await, Ok(7));
        actor.await.expect("actor");
        assert_eq!(call(&tx, |r| r).await, Err(Ended));
    }
}
