//! Line diffs for people: the shortest edit script between two texts (Myers' algorithm) as
//! a unified diff with three lines of context, as `diff -u` and `kubectl diff` print it.

/// One line of the edit script: kept, removed from the old text, or added by the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Keep,
    Remove,
    Add,
}

const CONTEXT: usize = 3;

/// `before` → `after` as a unified diff under `---`/`+++` headers naming each side; empty
/// when the texts are the same. Every changed line is shown whole.
pub fn unified(before: &str, after: &str, old_label: &str, new_label: &str) -> String {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    let script = edit_script(&a, &b);
    if script.iter().all(|(op, _, _)| *op == Op::Keep) {
        return String::new();
    }
    let mut out = format!("--- {old_label}\n+++ {new_label}\n");
    // Hunks: the changes with their context, merged when the contexts touch.
    let changed: Vec<usize> = (0..script.len())
        .filter(|&i| script[i].0 != Op::Keep)
        .collect();
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for &i in &changed {
        let start = i.saturating_sub(CONTEXT);
        let end = (i + CONTEXT + 1).min(script.len());
        match groups.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => groups.push((start, end)),
        }
    }
    for (start, end) in groups {
        let hunk = &script[start..end];
        let old_len = hunk.iter().filter(|(op, _, _)| *op != Op::Add).count();
        let new_len = hunk.iter().filter(|(op, _, _)| *op != Op::Remove).count();
        let (_, old_at, new_at) = script[start];
        // A side with no lines in the hunk is numbered by the line before it, as diff does.
        let first = |at: usize, len: usize| if len == 0 { at } else { at + 1 };
        out.push_str(&format!(
            "@@ -{},{old_len} +{},{new_len} @@\n",
            first(old_at, old_len),
            first(new_at, new_len)
        ));
        for &(op, ai, bi) in hunk {
            let (mark, line) = match op {
                Op::Keep => (' ', a[ai]),
                Op::Remove => ('-', a[ai]),
                Op::Add => ('+', b[bi]),
            };
            out.push(mark);
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The edit script, each step with the positions in `a` and `b` it starts at.
fn edit_script(a: &[&str], b: &[&str]) -> Vec<(Op, usize, usize)> {
    // A common prefix and suffix cost nothing to keep and shrink the search.
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (mid_a, mid_b) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut script: Vec<(Op, usize, usize)> = (0..prefix).map(|i| (Op::Keep, i, i)).collect();
    for (op, ai, bi) in myers(mid_a, mid_b) {
        script.push((op, ai + prefix, bi + prefix));
    }
    let (tail_a, tail_b) = (a.len() - suffix, b.len() - suffix);
    script.extend((0..suffix).map(|i| (Op::Keep, tail_a + i, tail_b + i)));
    script
}

/// Myers' O((N+M)·D) shortest edit script, with the frontier of every round kept for the
/// walk back.
fn myers(a: &[&str], b: &[&str]) -> Vec<(Op, usize, usize)> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max = n + m;
    let offset = max + 1;
    let at = |k: isize| (k + offset) as usize;
    let mut v = vec![0isize; (2 * max + 3) as usize];
    let mut trace: Vec<Vec<isize>> = Vec::new();
    'search: for d in 0..=max {
        trace.push(v.clone());
        for k in (-d..=d).step_by(2) {
            let mut x = if k == -d || (k != d && v[at(k - 1)] < v[at(k + 1)]) {
                v[at(k + 1)]
            } else {
                v[at(k - 1)] + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[at(k)] = x;
            if x >= n && y >= m {
                break 'search;
            }
        }
    }
    let mut steps = Vec::new();
    let (mut x, mut y) = (n, m);
    for (d, v) in trace.iter().enumerate().rev() {
        let d = d as isize;
        let k = x - y;
        let prev_k = if k == -d || (k != d && v[at(k - 1)] < v[at(k + 1)]) {
            k + 1
        } else {
            k - 1
        };
        let prev_x = v[at(prev_k)];
        let prev_y = prev_x - prev_k;
        while x > prev_x && y > prev_y {
            x -= 1;
            y -= 1;
            steps.push((Op::Keep, x as usize, y as usize));
        }
        if d > 0 {
            if x == prev_x {
                steps.push((Op::Add, x as usize, prev_y as usize));
            } else {
                steps.push((Op::Remove, prev_x as usize, y as usize));
            }
        }
        x = prev_x;
        y = prev_y;
    }
    steps.reverse();
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_changed_line_is_shown_whole_with_context() {
        let image = |tag: &str| {
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n      - name: web\n        image: registry.example.com/a/very/long/path/to/the/image/of/the/web/frontend/service:{tag}\n        ports:\n        - containerPort: 80\n"
            )
        };
        let d = unified(&image("1.0"), &image("1.1"), "live", "after");
        assert_eq!(
            d,
            "--- live\n+++ after\n@@ -8,6 +8,6 @@\n     spec:\n       containers:\n       - name: web\n-        image: registry.example.com/a/very/long/path/to/the/image/of/the/web/frontend/service:1.0\n+        image: registry.example.com/a/very/long/path/to/the/image/of/the/web/frontend/service:1.1\n         ports:\n         - containerPort: 80\n"
        );
    }

    #[test]
    fn creation_deletion_and_separate_hunks() {
        assert_eq!(
            unified("", "a\nb\n", "x", "y"),
            "--- x\n+++ y\n@@ -0,0 +1,2 @@\n+a\n+b\n"
        );
        assert_eq!(
            unified("a\n", "", "x", "y"),
            "--- x\n+++ y\n@@ -1,1 +0,0 @@\n-a\n"
        );
        assert_eq!(unified("same\n", "same\n", "x", "y"), "");
        let old: String = (1..=20).map(|i| format!("{i}\n")).collect();
        let new = old.replace("2\n", "two\n").replace("\n18\n", "\n18\n18b\n");
        let d = unified(&old, &new, "x", "y");
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
        assert!(d.contains("-2\n+two\n"), "{d}");
        assert!(d.contains(" 18\n+18b\n 19\n"), "{d}");
    }

    #[test]
    fn the_script_rebuilds_both_sides() {
        for (a, b) in [
            ("a b c a b b a", "c b a b a c"),
            ("x", "y"),
            ("", "p q"),
            ("p q r s", "q s t"),
        ] {
            let a: Vec<&str> = a.split(' ').filter(|s| !s.is_empty()).collect();
            let b: Vec<&str> = b.split(' ').filter(|s| !s.is_empty()).collect();
            let script = edit_script(&a, &b);
            let old: Vec<&str> = script
                .iter()
                .filter(|s| s.0 != Op::Add)
                .map(|s| a[s.1])
                .collect();
            let new: Vec<&str> = script
                .iter()
                .filter(|s| s.0 != Op::Remove)
                .map(|s| b[s.2])
                .collect();
            assert_eq!((old, new), (a.clone(), b.clone()));
        }
    }
}
