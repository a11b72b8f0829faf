//! A registration's command queue (update, deregister, abandon), from its handle
//! to its task.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, Notify};

use crate::{Error, Result, ServiceInstance};

/// What a [`Registration`](crate::Registration) asks of its task.
pub(crate) enum Command {
    /// Boxed: a command is part of the registered phase's state while it is handled.
    Update(Box<ServiceInstance>, oneshot::Sender<Result<()>>),
    Deregister(oneshot::Sender<Result<()>>),
    /// Marks the instance draining (true) or serving again.
    Drain(bool, oneshot::Sender<Result<()>>),
    Abandon,
}

/// A registration's command queue: one small allocation, and none for the queue
/// until a command comes. (A tokio mpsc channel allocates a block of slots per
/// registration up front; with thousands of registrations in one process, that
/// long-lived memory would be most of what a registration costs to hold.)
pub(crate) fn inbox() -> (Outbox, Inbox) {
    let shared = Arc::new(Mailbox {
        state: Mutex::new(MailboxState {
            queue: VecDeque::new(),
            sender: true,
            receiver: true,
        }),
        notify: Notify::new(),
    });
    (Outbox(shared.clone()), Inbox(shared))
}

struct Mailbox {
    state: Mutex<MailboxState>,
    /// Wakes the receiver (`notify_one` keeps a permit when it is not waiting).
    notify: Notify,
}

struct MailboxState {
    queue: VecDeque<Command>,
    /// Whether the sending and receiving ends are still alive.
    sender: bool,
    receiver: bool,
}

impl Mailbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, MailboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending end, held by the [`Registration`](crate::Registration).
pub(crate) struct Outbox(Arc<Mailbox>);

impl Outbox {
    /// Queues `command`; `Err(Closed)` when the task has ended.
    pub(crate) fn send(&self, command: Command) -> Result<()> {
        let mut state = self.0.lock();
        if !state.receiver {
            return Err(Error::closed("registration"));
        }
        state.queue.push_back(command);
        drop(state);
        self.0.notify.notify_one();
        Ok(())
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.0.lock().sender = false;
        self.0.notify.notify_one();
    }
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

/// The receiving end, held by the registration's task.
pub(crate) struct Inbox(Arc<Mailbox>);

impl Inbox {
    /// The next command; `None` once the [`Registration`](crate::Registration) is dropped and every
    /// command it sent was received. Cancel-safe: a command is taken only when returned.
    pub(crate) async fn recv(&mut self) -> Option<Command> {
        loop {
            {
                let mut state = self.0.lock();
                if let Some(command) = state.queue.pop_front() {
                    return Some(command);
                }
                if !state.sender {
                    return None;
                }
            }
            self.0.notify.notified().await;
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        // Commands left unanswered drop their reply senders: their callers see `Closed`.
        let pending = {
            let mut state = self.0.lock();
            state.receiver = false;
            std::mem::take(&mut state.queue)
        };
        drop(pending);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn inbox_delivers_in_order_then_ends_when_the_registration_is_gone() {
        let (outbox, mut inbox) = inbox();
        outbox.send(Command::Abandon).unwrap();
        let (tx, _rx) = oneshot::channel();
        outbox.send(Command::Deregister(tx)).unwrap();
        assert!(matches!(inbox.recv().await, Some(Command::Abandon)));
        // A receiver waiting before the send is woken by it.
        let waiting = tokio::spawn(async move {
            let second = inbox.recv().await;
            let third = inbox.recv().await;
            (matches!(second, Some(Command::Deregister(_))), third.is_none())
        });
        tokio::task::yield_now().await;
        drop(outbox);
        let ended = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(
            ended.expect("the receiver was woken").unwrap(),
            (true, true),
            "queued commands first, then the end"
        );
    }

    #[tokio::test]
    async fn a_wakeup_is_not_lost_between_check_and_wait() {
        let (outbox, mut inbox) = inbox();
        let receiver = tokio::spawn(async move { inbox.recv().await.is_some() });
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        outbox.send(Command::Abandon).unwrap();
        let woken = tokio::time::timeout(Duration::from_secs(5), receiver).await;
        assert!(woken.expect("the receiver was woken").unwrap());
    }

    #[tokio::test]
    async fn commands_to_an_ended_task_fail_and_pending_replies_are_dropped() {
        let (outbox, inbox) = inbox();
        let (tx, rx) = oneshot::channel();
        outbox.send(Command::Deregister(tx)).unwrap();
        drop(inbox); // the task ended without answering
        assert!(rx.await.is_err(), "the caller sees the reply channel closed");
        assert_eq!(
            outbox.send(Command::Abandon).unwrap_err().kind(),
            crate::ErrorKind::Closed
        );
    }
}
