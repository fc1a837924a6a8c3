//! Independent pieces of work spread over several GPU sessions (`--gpus` on `sweep`
//! and `check`): one thread per session takes the next piece as soon as its GPU is
//! free; each result comes back to the caller's thread as it lands, so the caller
//! writes it down before the next (a crash loses only what was in flight). With one
//! session it is the plain loop, in order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use anyhow::{anyhow, Result};

/// Carries out `work` on every item, on whichever of `workers` is free; `done`
/// hears each result with the item's index, in the order they land. The first
/// error (of `work` or of `done`) stops handing out items; the ones in flight end,
/// and that error is returned.
pub fn fan_out<S: Send, T: Send, R: Send>(
    workers: &mut [S],
    items: Vec<T>,
    work: &(dyn Fn(&mut S, T) -> Result<R> + Sync),
    done: &mut dyn FnMut(usize, R) -> Result<()>,
) -> Result<()> {
    if workers.is_empty() {
        return Err(anyhow!("no GPU to work on"));
    }
    if let [only] = workers {
        for (i, item) in items.into_iter().enumerate() {
            done(i, work(only, item)?)?;
        }
        return Ok(());
    }
    let queue = Mutex::new(items.into_iter().enumerate().collect::<VecDeque<_>>());
    let failed = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Result<R>)>();
    std::thread::scope(|s| {
        for w in workers.iter_mut() {
            let (tx, queue, failed) = (tx.clone(), &queue, &failed);
            s.spawn(move || loop {
                if failed.load(Ordering::SeqCst) {
                    return;
                }
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some((i, item)) = next else { return };
                let r = work(w, item);
                if r.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                if tx.send((i, r)).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        let mut first_err = None;
        for (i, r) in rx {
            if first_err.is_some() {
                continue;
            }
            match r.and_then(|r| done(i, r)) {
                Ok(()) => {}
                Err(e) => {
                    failed.store(true, Ordering::SeqCst);
                    first_err = Some(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_worked_once_on_some_worker_and_results_come_back() {
        let mut workers = vec![Vec::new(), Vec::new(), Vec::new()];
        let mut got = Vec::new();
        fan_out(
            &mut workers,
            (0..40).collect(),
            &|w: &mut Vec<i32>, x: i32| {
                std::thread::sleep(std::time::Duration::from_millis(1));
                w.push(x);
                Ok(x * 2)
            },
            &mut |i, r| {
                got.push((i, r));
                Ok(())
            },
        )
        .unwrap();
        got.sort();
        assert_eq!(got, (0..40).map(|i| (i, 2 * i as i32)).collect::<Vec<_>>());
        let mut all: Vec<i32> = workers.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..40).collect::<Vec<_>>());
        assert!(workers.iter().filter(|w| !w.is_empty()).count() >= 2);
    }

    #[test]
    fn one_worker_is_the_plain_loop_in_order() {
        let mut workers = vec![0];
        let mut order = Vec::new();
        fan_out(
            &mut workers,
            vec!["a", "b", "c"],
            &|n: &mut i32, x: &str| {
                *n += 1;
                Ok(x.to_string())
            },
            &mut |i, r| {
                order.push(format!("{i}{r}"));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(order, ["0a", "1b", "2c"]);
        assert_eq!(workers, [3]);
    }

    #[test]
    fn the_first_error_stops_handing_out_and_is_returned() {
        let mut workers = vec![(), ()];
        let mut landed = 0;
        let r = fan_out(
            &mut workers,
            (0..100).collect(),
            &|_: &mut (), x: i32| {
                if x == 3 {
                    Err(anyhow!("item 3 broke"))
                } else {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    Ok(x)
                }
            },
            &mut |_, _| {
                landed += 1;
                Ok(())
            },
        );
        assert_eq!(r.unwrap_err().to_string(), "item 3 broke");
        assert!(landed < 20, "kept going after the error: {landed}");
    }
}
