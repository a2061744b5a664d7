//! Folded stacks (`root;caller;...;leaf <value>`), the input of every flame-graph tool
//! (flamegraph.pl, inferno, speedscope). Only positive values can be drawn: with a base,
//! stacks that shrank are left out and counted, so the caller can say so.

use super::aggregate::{Metric, NameProfile};
use std::fmt::Write;

/// A frame name safe inside a folded line (no `;`, no newline).
fn clean(name: &str) -> String {
    name.replace([';', '\n', '\r'], ",")
}

/// Folded lines, sorted, values rounded to integers; plus (number, sum) of stacks left
/// out because they are negative.
pub fn lines(np: &NameProfile, metric: Metric) -> (Vec<String>, usize, f64) {
    let m = metric as usize;
    let mut out = Vec::with_capacity(np.stacks.len());
    let mut dropped = 0;
    let mut dropped_sum = 0.0;
    for (stack, v) in &np.stacks {
        let value = v[m].round();
        if stack.is_empty() || value == 0.0 {
            continue;
        }
        if value < 0.0 {
            dropped += 1;
            dropped_sum += v[m];
            continue;
        }
        let mut line = String::new();
        for (i, &id) in stack.iter().rev().enumerate() {
            if i > 0 {
                line.push(';');
            }
            line.push_str(&clean(np.names.get(id)));
        }
        let _ = write!(line, " {}", value as u64);
        out.push(line);
    }
    out.sort();
    (out, dropped, dropped_sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::AddrProfile;
    use crate::symbolize::{Frame, Symbols};

    #[test]
    fn folded_lines_are_root_first_with_integer_values() {
        let mut p = AddrProfile::default();
        p.stacks.insert(vec![0x1, 0x2], [1.0, 100.4, 0.0, 0.0]);
        p.stacks.insert(vec![0x3, 0x2], [1.0, -7.0, 0.0, 0.0]);
        let mut s = Symbols::new();
        for (pc, n) in [(0x1, "leaf;x"), (0x2, "main"), (0x3, "gone")] {
            s.insert(
                pc,
                vec![Frame {
                    func: n.into(),
                    full: n.into(),
                    source: Default::default(),
                    allocator: false,
                }],
            );
        }
        let np = NameProfile::build(&p, &s, None);
        let (lines, dropped, sum) = lines(&np, Metric::InuseSpace);
        assert_eq!(lines, vec!["main;leaf,x 100"]);
        assert_eq!((dropped, sum), (1, -7.0));
    }
}
