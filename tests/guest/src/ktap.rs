// SPDX-License-Identifier: GPL-2.0

//! KTAP output (Documentation/dev-tools/ktap.rst): the version and plan
//! lines, one result line per test case with its diagnostics before it, and
//! the totals as a closing diagnostic.

use std::io::{self, Write};

/// How a test case ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    Fail(String),
    /// Not run, because something it needs is missing (another case's
    /// failure says why).
    Skip(String),
}

/// A KTAP document being written.
pub(crate) struct Ktap<W: Write> {
    out: W,
    number: usize,
    passed: usize,
    failed: usize,
    skipped: usize,
}

impl<W: Write> Ktap<W> {
    /// Starts the document with its version line and a plan of `cases`.
    pub(crate) fn new(mut out: W, cases: usize) -> io::Result<Self> {
        writeln!(out, "KTAP version 1")?;
        writeln!(out, "1..{cases}")?;
        out.flush()?;
        Ok(Self {
            out,
            number: 0,
            passed: 0,
            failed: 0,
            skipped: 0,
        })
    }

    /// Writes lines of diagnostics.
    pub(crate) fn diagnostic(&mut self, text: &str) -> io::Result<()> {
        for line in text.lines() {
            writeln!(self.out, "# {line}")?;
        }
        Ok(())
    }

    /// Writes the next result line, with `notes` and any failure message as
    /// diagnostics before it, and flushes, so that a run the kernel cuts
    /// short still shows how far it got.
    pub(crate) fn result(
        &mut self,
        name: &str,
        verdict: &Verdict,
        notes: &[String],
    ) -> io::Result<()> {
        self.number += 1;
        for note in notes {
            self.diagnostic(note)?;
        }
        let name = clean(name);
        match verdict {
            Verdict::Pass => {
                self.passed += 1;
                writeln!(self.out, "ok {} - {name}", self.number)?;
            }
            Verdict::Fail(message) => {
                self.failed += 1;
                self.diagnostic(&format!("{name}: {message}"))?;
                writeln!(self.out, "not ok {} - {name}", self.number)?;
            }
            Verdict::Skip(reason) => {
                self.skipped += 1;
                writeln!(
                    self.out,
                    "ok {} - {name} # SKIP {}",
                    self.number,
                    clean(reason)
                )?;
            }
        }
        self.out.flush()
    }

    /// Writes the totals; true when no case failed.
    pub(crate) fn finish(mut self) -> io::Result<bool> {
        writeln!(
            self.out,
            "# {} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )?;
        self.out.flush()?;
        Ok(self.failed == 0)
    }
}

/// A name or reason on one line, without `#`, which would start a
/// directive.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' | '#' => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(run: impl FnOnce(&mut Ktap<&mut Vec<u8>>)) -> (String, bool) {
        let mut out = Vec::new();
        let mut ktap = Ktap::new(&mut out, 3).expect("writes");
        run(&mut ktap);
        let ok = ktap.finish().expect("writes");
        (String::from_utf8(out).expect("text"), ok)
    }

    #[test]
    fn lines() {
        let (text, ok) = document(|ktap| {
            ktap.result("first", &Verdict::Pass, &["2 segments".to_owned()])
                .expect("writes");
            ktap.result(
                "second #2",
                &Verdict::Fail("EINVAL\nexpected ENODEV".to_owned()),
                &[],
            )
            .expect("writes");
            ktap.result("third", &Verdict::Skip("no edu".to_owned()), &[])
                .expect("writes");
        });
        assert!(!ok);
        assert_eq!(
            text,
            "KTAP version 1\n\
             1..3\n\
             # 2 segments\n\
             ok 1 - first\n\
             # second  2: EINVAL\n\
             # expected ENODEV\n\
             not ok 2 - second  2\n\
             ok 3 - third # SKIP no edu\n\
             # 1 passed, 1 failed, 1 skipped\n"
        );
    }

    #[test]
    fn passes_when_nothing_failed() {
        let (_, ok) = document(|ktap| {
            ktap.result("only", &Verdict::Pass, &[]).expect("writes");
        });
        assert!(ok);
    }
}
