//! Which heap files to delete: a pure function of the listing, the policy and the time.

use super::HeapFile;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// `[dumps] keep`, `max_total_mb`, `max_age_h`; 0 switches a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub keep: u64,
    pub max_total_bytes: u64,
    pub max_age: Duration,
}

/// Files to delete, oldest first, with the reason for each. `files` must be sorted
/// oldest first (as `dumps::list` returns them). The newest file is never deleted.
pub fn plan(files: &[HeapFile], policy: &Policy, now: SystemTime) -> Vec<(PathBuf, String)> {
    let Some((_, older)) = files.split_last() else {
        return Vec::new();
    };
    let mut count = files.len() as u64;
    let mut total: u64 = files.iter().map(|f| f.size).sum();
    let mut out = Vec::new();
    for file in older {
        let age = now.duration_since(file.modified).unwrap_or_default();
        let reason = if policy.keep > 0 && count > policy.keep {
            format!("more than keep = {} files", policy.keep)
        } else if policy.max_total_bytes > 0 && total > policy.max_total_bytes {
            format!(
                "heap files take {} MiB, more than max_total_mb = {}",
                total >> 20,
                policy.max_total_bytes >> 20
            )
        } else if !policy.max_age.is_zero() && age > policy.max_age {
            format!("older than max_age_h = {}", policy.max_age.as_secs() / 3600)
        } else {
            continue;
        };
        count -= 1;
        total -= file.size;
        out.push((file.path.clone(), reason));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dumps::HeapName;

    const HOUR: Duration = Duration::from_secs(3600);

    fn file(i: u64, size: u64, age_h: u64, now: SystemTime) -> HeapFile {
        let name = format!("mysqld.1.{i}.i{i}.heap");
        HeapFile {
            path: PathBuf::from(&name),
            name: HeapName::parse("mysqld", &name).unwrap(),
            size,
            modified: now - HOUR * age_h as u32,
        }
    }

    fn names(plan: &[(PathBuf, String)]) -> Vec<String> {
        plan.iter().map(|(p, _)| p.display().to_string()).collect()
    }

    #[test]
    fn keeps_the_newest_n() {
        let now = SystemTime::now();
        let files: Vec<_> = (0..5).map(|i| file(i, 10, 5 - i, now)).collect();
        let policy = Policy {
            keep: 3,
            max_total_bytes: 0,
            max_age: Duration::ZERO,
        };
        assert_eq!(
            names(&plan(&files, &policy, now)),
            ["mysqld.1.0.i0.heap", "mysqld.1.1.i1.heap"]
        );
    }

    #[test]
    fn total_size_and_age_limits() {
        let now = SystemTime::now();
        let files: Vec<_> = (0..4).map(|i| file(i, 100, 40 - i * 10, now)).collect();
        let by_size = Policy {
            keep: 0,
            max_total_bytes: 250,
            max_age: Duration::ZERO,
        };
        assert_eq!(
            names(&plan(&files, &by_size, now)),
            ["mysqld.1.0.i0.heap", "mysqld.1.1.i1.heap"]
        );
        let by_age = Policy {
            keep: 0,
            max_total_bytes: 0,
            max_age: HOUR * 25,
        };
        let p = plan(&files, &by_age, now);
        assert_eq!(names(&p), ["mysqld.1.0.i0.heap", "mysqld.1.1.i1.heap"]);
        assert!(p[0].1.contains("max_age_h = 25"));
    }

    #[test]
    fn never_deletes_the_newest_even_if_it_breaks_every_limit() {
        let now = SystemTime::now();
        let files = vec![file(0, 1 << 40, 1000, now)];
        let strict = Policy {
            keep: 1,
            max_total_bytes: 1,
            max_age: HOUR,
        };
        assert!(plan(&files, &strict, now).is_empty());
        assert!(plan(&[], &strict, now).is_empty());
    }
}
