//! The newest value of something that changes, for readers that each want the
//! newest state and never a queue of older ones: what a watch cache publishes
//! and every [`ServiceWatch`](crate::ServiceWatch) of it reads.
//!
//! It does what `tokio::sync::watch` does for this one use, with less work per
//! change: a value and its version under one lock, and the wakers of the
//! readers that wait. Publishing takes the lock once and wakes each waiting
//! reader; a reader that looks takes it once. (tokio's channel takes a
//! read-write lock and wakes through eight `Notify`s, each with a lock of its
//! own, and a reader waits through a future of its own for every change.)
//! Nothing here holds the lock while it wakes or drops a value, and a read is
//! cancel-safe: it keeps nothing but the version it has seen.
//!
//! ```
//! use octopus_discovery_core::latest;
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let (publisher, mut reader) = latest::channel(1);
//! assert_eq!(reader.changed(|_| true).await, Some(1)); // a new reader sees the value there is
//! publisher.publish(2);
//! publisher.publish(3); // a reader that did not look in between sees the newest only
//! assert_eq!(reader.changed(|_| true).await, Some(3));
//! drop(publisher);
//! assert_eq!(reader.changed(|_| true).await, None); // no publisher, nothing unseen: the end
//! # });
//! ```

use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// A publisher and a reader of `value`; more readers come from cloning it.
pub fn channel<T>(value: T) -> (Publisher<T>, Subscriber<T>) {
    let shared = Arc::new(Mutex::new(Inner {
        value,
        version: 0,
        closed: false,
        waiting: Vec::new(),
        layout: 0,
        vacant: 0,
    }));
    let reader = Subscriber {
        shared: shared.clone(),
        seen: None,
        slot: None,
    };
    let publisher = Publisher {
        shared,
        spare: Mutex::new(Vec::new()),
    };
    (publisher, reader)
}

/// Publishes values; dropping it ends every reader (after the value they have
/// not seen, if any).
pub struct Publisher<T> {
    shared: Arc<Mutex<Inner<T>>>,
    /// The wakers taken from the readers at the last publication, emptied and
    /// kept for the next, so that a publication allocates nothing.
    spare: Mutex<Vec<Option<Waker>>>,
}

/// Reads the newest value: each read returns a value it has not returned
/// before, the newest there is.
pub struct Subscriber<T> {
    shared: Arc<Mutex<Inner<T>>>,
    /// The version last returned; `None`: none yet (the value there is counts
    /// as new).
    seen: Option<u64>,
    /// Where this reader's waker waits: its index among the waiting, valid
    /// while the layout it was put there in is the current one.
    slot: Option<(u64, usize)>,
}

struct Inner<T> {
    value: T,
    /// Raised by every publication.
    version: u64,
    /// The publisher is gone.
    closed: bool,
    /// The wakers of readers waiting for a version after this one (a reader
    /// dropped while waiting leaves `None` in its place).
    waiting: Vec<Option<Waker>>,
    /// Raised whenever the waiting move (a publication takes them all; a
    /// compaction closes the gaps): a reader's slot from an older layout is void.
    layout: u64,
    /// The `None`s among the waiting.
    vacant: usize,
}

impl<T> Inner<T> {
    /// Moves the waiting wakers into `into`, which must be empty (the waiting
    /// list keeps its allocation for next time), and voids every reader's slot.
    fn take_waiting(&mut self, into: &mut Vec<Option<Waker>>) {
        std::mem::swap(&mut self.waiting, into);
        self.layout += 1;
        self.vacant = 0;
    }
}

/// Gaps left by dropped readers tolerated among the waiting before they are closed.
const COMPACT_AFTER: usize = 32;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T> Publisher<T> {
    /// Makes `value` the newest, wakes every reader that waits, and returns
    /// the value it replaces (dropped by the caller, outside the lock).
    pub fn publish(&self, value: T) -> T {
        let mut spare = lock(&self.spare);
        let old = {
            let mut inner = lock(&self.shared);
            inner.version += 1;
            inner.take_waiting(&mut spare);
            std::mem::replace(&mut inner.value, value)
        };
        for waker in spare.drain(..).flatten() {
            waker.wake();
        }
        old
    }
}

impl<T> Drop for Publisher<T> {
    fn drop(&mut self) {
        let mut waiting = Vec::new();
        {
            let mut inner = lock(&self.shared);
            inner.closed = true;
            inner.take_waiting(&mut waiting);
        }
        for waker in waiting.into_iter().flatten() {
            waker.wake();
        }
    }
}

impl<T> Clone for Subscriber<T> {
    /// Another reader that has seen what this one has.
    fn clone(&self) -> Self {
        Subscriber {
            shared: self.shared.clone(),
            seen: self.seen,
            slot: None,
        }
    }
}

impl<T: Clone> Subscriber<T> {
    /// The newest value, cloned, without waiting (and without counting it as seen).
    pub fn latest(&self) -> T {
        lock(&self.shared).value.clone()
    }

    /// Waits for a value this reader has not returned that `accept`s (a value
    /// published and replaced before the reader looked is never seen), and
    /// returns it; `None` once the publisher is gone and nothing newer is left.
    pub async fn changed(&mut self, accept: impl Fn(&T) -> bool) -> Option<T> {
        poll_fn(|cx| self.poll_changed(cx, &accept)).await
    }

    /// [`changed`](Self::changed) as a poll: `Pending` registers `cx`'s waker
    /// for the next publication.
    pub fn poll_changed(&mut self, cx: &mut Context<'_>, accept: impl Fn(&T) -> bool) -> Poll<Option<T>> {
        let mut inner = lock(&self.shared);
        if self.seen != Some(inner.version) {
            self.seen = Some(inner.version);
            if accept(&inner.value) {
                return Poll::Ready(Some(inner.value.clone()));
            }
        }
        if inner.closed {
            return Poll::Ready(None);
        }
        // A waker this replaces is dropped after the lock (a waker's drop may run code).
        let replaced = match self.slot {
            // A valid slot holds this reader's waker (only its own drop empties it).
            Some((at, i)) if at == inner.layout => match &mut inner.waiting[i] {
                Some(w) if w.will_wake(cx.waker()) => None,
                w => w.replace(cx.waker().clone()),
            },
            _ => {
                // Readers dropped while waiting, between publications, leave
                // gaps: when they are most of the waiting, close them (readers
                // whose place moves find their slot void and take a new one;
                // until then their waker, moved, is still woken).
                if inner.vacant > COMPACT_AFTER && inner.vacant * 2 > inner.waiting.len() {
                    inner.waiting.retain(Option::is_some);
                    inner.vacant = 0;
                    inner.layout += 1;
                }
                inner.waiting.push(Some(cx.waker().clone()));
                self.slot = Some((inner.layout, inner.waiting.len() - 1));
                None
            }
        };
        drop(inner);
        drop(replaced);
        Poll::Pending
    }
}

impl<T> Drop for Subscriber<T> {
    /// Takes this reader's waker out of the waiting, if it is there.
    fn drop(&mut self) {
        if let Some((at, i)) = self.slot {
            let waker = {
                let mut inner = lock(&self.shared);
                let waker = match inner.layout == at {
                    true => inner.waiting.get_mut(i).and_then(Option::take),
                    false => None,
                };
                inner.vacant += usize::from(waker.is_some());
                waker
            };
            drop(waker);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn a_reader_sees_the_newest_value_once_and_waits_for_the_next() {
        let (publisher, mut reader) = channel(0);
        let (woken, w) = waker();
        let mut cx = Context::from_waker(&w);
        assert_eq!(reader.poll_changed(&mut cx, |_| true), Poll::Ready(Some(0)));
        assert_eq!(reader.poll_changed(&mut cx, |_| true), Poll::Pending);
        // Polled again while waiting: one place among the waiting, one wake.
        assert_eq!(reader.poll_changed(&mut cx, |_| true), Poll::Pending);
        assert_eq!(publisher.publish(1), 0);
        assert_eq!(publisher.publish(2), 1);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(reader.poll_changed(&mut cx, |_| true), Poll::Ready(Some(2)));
        assert_eq!(reader.poll_changed(&mut cx, |_| true), Poll::Pending);
    }

    #[test]
    fn a_reader_polled_with_another_waker_wakes_that_one() {
        let (publisher, mut reader) = channel(0);
        let ((a_woken, a), (b_woken, b)) = (waker(), waker());
        assert_eq!(
            reader.poll_changed(&mut Context::from_waker(&a), |_| true),
            Poll::Ready(Some(0))
        );
        assert_eq!(
            reader.poll_changed(&mut Context::from_waker(&a), |_| true),
            Poll::Pending
        );
        assert_eq!(
            reader.poll_changed(&mut Context::from_waker(&b), |_| true),
            Poll::Pending
        );
        publisher.publish(1);
        assert_eq!(a_woken.0.load(Ordering::SeqCst), 0);
        assert_eq!(b_woken.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn values_not_accepted_are_passed_over_and_the_end_comes_after_the_last_value() {
        let (publisher, mut reader) = channel(None);
        let (woken, w) = waker();
        let mut cx = Context::from_waker(&w);
        assert_eq!(reader.poll_changed(&mut cx, Option::is_some), Poll::Pending);
        publisher.publish(None);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(reader.poll_changed(&mut cx, Option::is_some), Poll::Pending);
        publisher.publish(Some(7));
        let mut late = reader.clone();
        drop(publisher);
        assert_eq!(
            woken.0.load(Ordering::SeqCst),
            2,
            "woken by the value (not waiting since)"
        );
        assert_eq!(
            reader.poll_changed(&mut cx, Option::is_some),
            Poll::Ready(Some(Some(7)))
        );
        assert_eq!(reader.poll_changed(&mut cx, Option::is_some), Poll::Ready(None));
        assert_eq!(late.poll_changed(&mut cx, Option::is_some), Poll::Ready(Some(Some(7))));
        assert_eq!(late.latest(), Some(7));
    }

    #[test]
    fn a_waiting_reader_is_woken_by_the_end() {
        let (publisher, mut reader) = channel(1);
        let (woken, w) = waker();
        let mut cx = Context::from_waker(&w);
        assert_eq!(reader.poll_changed(&mut cx, |_| true), Poll::Ready(Some(1)));
        assert_eq!(reader.poll_changed(&mut cx, |_| true), Poll::Pending);
        drop(publisher);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(reader.poll_changed(&mut cx, |_| true), Poll::Ready(None));
    }

    #[test]
    fn many_readers_are_each_woken_once_and_a_dropped_one_is_not() {
        let (publisher, reader) = channel(0u32);
        let mut readers: Vec<_> = (0..5).map(|_| reader.clone()).collect();
        let wakers: Vec<_> = (0..5).map(|_| waker()).collect();
        for (r, (_, w)) in readers.iter_mut().zip(&wakers) {
            let mut cx = Context::from_waker(w);
            assert_eq!(r.poll_changed(&mut cx, |_| true), Poll::Ready(Some(0)));
            assert_eq!(r.poll_changed(&mut cx, |_| true), Poll::Pending);
        }
        drop(readers.remove(2));
        publisher.publish(1);
        let woken: Vec<usize> = wakers.iter().map(|(c, _)| c.0.load(Ordering::SeqCst)).collect();
        assert_eq!(woken, [1, 1, 0, 1, 1]);
        // Each waits again: the places of the last publication are gone, new ones taken.
        for (r, (_, w)) in readers.iter_mut().zip([&wakers[0], &wakers[1], &wakers[3], &wakers[4]]) {
            let mut cx = Context::from_waker(w);
            assert_eq!(r.poll_changed(&mut cx, |_| true), Poll::Ready(Some(1)));
            assert_eq!(r.poll_changed(&mut cx, |_| true), Poll::Pending);
        }
        publisher.publish(2);
        let woken: Vec<usize> = wakers.iter().map(|(c, _)| c.0.load(Ordering::SeqCst)).collect();
        assert_eq!(woken, [2, 2, 0, 2, 2]);
    }

    #[test]
    fn readers_dropped_while_waiting_leave_no_lasting_gaps_and_moved_readers_are_still_woken() {
        let (publisher, reader) = channel(0u32);
        let (woken, w) = waker();
        let (_, others) = waker();
        let mut cx = Context::from_waker(&others);
        // A reader that waits the whole time, then thousands that wait and go,
        // with no publication between.
        let mut stays = reader.clone();
        let mut stays_cx = Context::from_waker(&w);
        assert_eq!(stays.poll_changed(&mut stays_cx, |_| true), Poll::Ready(Some(0)));
        assert_eq!(stays.poll_changed(&mut stays_cx, |_| true), Poll::Pending);
        for _ in 0..5_000 {
            let mut r = reader.clone();
            assert_eq!(r.poll_changed(&mut cx, |_| true), Poll::Ready(Some(0)));
            assert_eq!(r.poll_changed(&mut cx, |_| true), Poll::Pending);
        }
        let len = lock(&reader.shared).waiting.len();
        assert!(len <= 2 * COMPACT_AFTER + 2, "{len} places for 1 waiting reader");
        // The reader that stayed, its place moved, is woken once by the next value.
        publisher.publish(1);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(stays.poll_changed(&mut stays_cx, |_| true), Poll::Ready(Some(1)));
    }

    #[tokio::test]
    async fn a_waiting_reader_on_another_task_gets_the_value() {
        let (publisher, mut reader) = channel(0);
        assert_eq!(reader.changed(|_| true).await, Some(0));
        let task = tokio::spawn(async move { reader.changed(|v| *v >= 3).await });
        for v in 1..=3 {
            tokio::task::yield_now().await;
            publisher.publish(v);
        }
        assert_eq!(task.await.unwrap(), Some(3));
    }
}
