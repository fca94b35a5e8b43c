//! Running one function over many items on a few threads, keeping their order: used for
//! hashing the files of a cache entry and for copying trees.
//!
//! Owns no policy: callers decide what runs in parallel.

/// Run `f` over `items` on up to `available_parallelism` threads (at most 8), keeping
/// order. Fewer than 64 items run on the calling thread: spawning costs more than it saves.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let n = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    if items.len() < 64 || n == 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(|| c.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker thread panicked"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_order_above_and_below_the_threshold() {
        for n in [10usize, 1000] {
            let v: Vec<usize> = (0..n).collect();
            assert_eq!(
                super::par_map(&v, |x| x * 2),
                (0..n).map(|x| x * 2).collect::<Vec<_>>()
            );
        }
    }
}
