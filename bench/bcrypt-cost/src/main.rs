//! Times one bcrypt verify at each cost the service could choose, with the
//! same crate and release profile as the login function. Prints one JSON
//! object per cost: `{"cost", "runs", "median_ms", "min_ms", "max_ms"}`.
//!
//! Usage: `bcrypt-cost [MIN_COST MAX_COST [RUNS]]` (default 10 13 5).

use std::time::Instant;

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments are whole numbers"))
        .collect();
    let min = args.first().copied().unwrap_or(10);
    let max = args.get(1).copied().unwrap_or(13);
    let runs = args.get(2).copied().unwrap_or(5).max(1);
    let password = "correct-horse-battery";
    for cost in min..=max {
        let hash = bcrypt::hash(password, cost).expect("bcrypt hash");
        // One untimed verify first: page faults and frequency ramp-up are
        // not part of a verify.
        assert!(bcrypt::verify(password, &hash).expect("bcrypt verify"));
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                let ok = bcrypt::verify(password, &hash).expect("bcrypt verify");
                let elapsed = start.elapsed().as_secs_f64() * 1000.0;
                assert!(ok);
                elapsed
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{{\"cost\":{cost},\"runs\":{runs},\"median_ms\":{:.2},\"min_ms\":{:.2},\"max_ms\":{:.2}}}",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1]
        );
    }
}
