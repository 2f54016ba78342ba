// SPDX-License-Identifier: GPL-2.0

//! The test cases and what they share: the devices under test, set up by
//! the first cases, and the helpers that turn an errno or a mismatch into a
//! failure message.
//!
//! Every case is known before the first one runs, so that the KTAP plan
//! comes first; cases of one scenario (export, then import, then walk...)
//! hand their state on through a [`Shared`] slot, and a case whose slot is
//! empty is skipped, the failure that emptied it being reported already.

mod barrier;
mod debugfs;
mod export;
mod faults;
mod fuzz;
mod gone;
mod hotplug;
mod info;
mod invalid;
mod invalid_importer;
mod lifetimes;
mod mmap;
mod ranges;
mod regressions;
mod reset;
mod revoke;
mod runs;
mod security;
mod setup;
mod stress;
mod unbind;
mod unload;
mod vfio;
mod vma;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use crate::exporter::Exporter;
use crate::ktap::Verdict;
use crate::pci::{self, Resource};
use crate::sys;

/// Fails the case with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err($crate::cases::Failure::Fail(format!($($message)+)));
        }
    };
}
pub(crate) use ensure;

/// How a case that did not pass ended; `?` turns a message into a failure.
#[derive(Debug)]
pub(crate) enum Failure {
    Fail(String),
    Skip(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Fail(message)
    }
}

/// What a case returns.
pub(crate) type Outcome = Result<(), Failure>;

impl From<Outcome> for Verdict {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Ok(()) => Verdict::Pass,
            Err(Failure::Fail(message)) => Verdict::Fail(message),
            Err(Failure::Skip(reason)) => Verdict::Skip(reason),
        }
    }
}

/// One KTAP test case.
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) run: Box<dyn FnOnce(&mut Context) -> Outcome>,
}

/// A case named `name` that runs `run`.
pub(crate) fn case(
    name: impl Into<String>,
    run: impl FnOnce(&mut Context) -> Outcome + 'static,
) -> Case {
    Case {
        name: name.into(),
        run: Box::new(run),
    }
}

/// Every case, in the order they run: the devices are bound first, the
/// exporter is exercised while every BAR is live, then come the cases that
/// revoke a BAR, reset a function or unbind a device, and last those that
/// close every file and unload both modules.
pub(crate) fn all() -> Vec<Case> {
    let mut cases = setup::cases();
    cases.extend(info::cases());
    cases.extend(export::cases());
    cases.extend(invalid::cases());
    cases.extend(ranges::cases());
    cases.extend(vfio::cases());
    cases.extend(runs::cases());
    cases.extend(debugfs::cases());
    cases.extend(mmap::cases());
    cases.extend(vma::cases());
    cases.extend(faults::cases());
    cases.extend(fuzz::cases());
    cases.extend(security::cases());
    cases.extend(vfio::cross_driver_cases());
    cases.extend(revoke::cases());
    cases.extend(reset::cases());
    cases.extend(barrier::cases());
    cases.extend(regressions::cases());
    cases.extend(unbind::cases());
    cases.extend(hotplug::cases());
    cases.extend(lifetimes::cases());
    cases.extend(stress::cases());
    cases.extend(unload::cases());
    cases
}

/// The three devices of the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    Edu,
    Ivshmem,
    Testdev,
}

impl Which {
    pub(crate) const ALL: [Which; 3] = [Which::Edu, Which::Ivshmem, Which::Testdev];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Which::Edu => "edu",
            Which::Ivshmem => "ivshmem",
            Which::Testdev => "pci-testdev",
        }
    }

    /// PCI vendor and device ID.
    pub(crate) fn id(self) -> (u16, u16) {
        match self {
            Which::Edu => (0x1234, 0x11e8),
            Which::Ivshmem => (0x1af4, 0x1110),
            Which::Testdev => (0x1b36, 0x0005),
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// A device bound to the driver, with its character device open.
#[derive(Debug)]
pub(crate) struct Device {
    pub(crate) function: pci::Function,
    /// The standard BARs as sysfs gives them.
    pub(crate) bars: [Resource; pci::NUM_BARS],
    pub(crate) exporter: Exporter,
}

impl Device {
    /// BAR `index` from sysfs.
    pub(crate) fn bar(&self, index: u32) -> &Resource {
        &self.bars[index as usize % pci::NUM_BARS]
    }
}

/// What the cases share.
#[derive(Default)]
pub(crate) struct Context {
    devices: [Option<Device>; 3],
    notes: Vec<String>,
}

impl Context {
    /// The device, or a skip if setting it up failed.
    pub(crate) fn device(&self, which: Which) -> Result<&Device, Failure> {
        self.devices[which.slot()]
            .as_ref()
            .ok_or_else(|| Failure::Skip(format!("{} is not bound", which.name())))
    }

    pub(crate) fn set_device(&mut self, which: Which, device: Device) {
        self.devices[which.slot()] = Some(device);
    }

    /// Takes the device out, for a case that unbinds it.
    pub(crate) fn take_device(&mut self, which: Which) -> Result<Device, Failure> {
        self.devices[which.slot()]
            .take()
            .ok_or_else(|| Failure::Skip(format!("{} is not bound", which.name())))
    }

    /// Adds a diagnostic line to the current case's result.
    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub(crate) fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }
}

/// State that one case of a scenario hands on to the next.
pub(crate) struct Shared<S>(Rc<RefCell<Option<S>>>);

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Self(Rc::clone(&self.0))
    }
}

impl<S> Shared<S> {
    pub(crate) fn new() -> Self {
        Self(Rc::new(RefCell::new(None)))
    }

    pub(crate) fn set(&self, state: S) {
        *self.0.borrow_mut() = Some(state);
    }

    /// Takes the state out (the scenario's last case owns it then).
    pub(crate) fn take(&self) -> Result<S, Failure> {
        self.0.borrow_mut().take().ok_or_else(missing)
    }

    /// Runs `run` on the state, or skips if an earlier case left none.
    pub(crate) fn with<T>(
        &self,
        run: impl FnOnce(&mut S) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let mut slot = self.0.borrow_mut();
        let state = slot.as_mut().ok_or_else(missing)?;
        run(state)
    }
}

fn missing() -> Failure {
    Failure::Skip("an earlier step of this scenario failed".to_owned())
}

/// The value of a call that must succeed, or a failure naming the call and
/// the errno.
pub(crate) fn must<T>(what: &str, result: io::Result<T>) -> Result<T, Failure> {
    result.map_err(|e| Failure::Fail(format!("{what}: {}", sys::describe(&e))))
}

/// Passes if the call failed with `errno`.
pub(crate) fn refused<T>(what: &str, result: io::Result<T>, errno: i32) -> Outcome {
    match result {
        Ok(_) => Err(Failure::Fail(format!(
            "{what}: succeeded, expected {}",
            sys::name(errno)
        ))),
        Err(e) if e.raw_os_error() == Some(errno) => Ok(()),
        Err(e) => Err(Failure::Fail(format!(
            "{what}: {}, expected {}",
            sys::describe(&e),
            sys::name(errno)
        ))),
    }
}

/// Runs every check and fails with all the messages, not only the first.
pub(crate) fn all_of(checks: impl IntoIterator<Item = Outcome>) -> Outcome {
    let mut messages = Vec::new();
    for check in checks {
        match check {
            Ok(()) => {}
            Err(Failure::Fail(message)) | Err(Failure::Skip(message)) => messages.push(message),
        }
    }
    if messages.is_empty() {
        Ok(())
    } else {
        Err(Failure::Fail(messages.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_checks() {
        let enodev = || Err::<(), _>(io::Error::from_raw_os_error(libc::ENODEV));
        assert!(refused("INFO", enodev(), libc::ENODEV).is_ok());
        let Err(Failure::Fail(message)) = refused("INFO", enodev(), libc::EINVAL) else {
            panic!("ENODEV is not EINVAL");
        };
        assert_eq!(message, "INFO: ENODEV (No such device), expected EINVAL");
        let Err(Failure::Fail(message)) = refused("INFO", Ok(()), libc::EINVAL) else {
            panic!("success is not EINVAL");
        };
        assert_eq!(message, "INFO: succeeded, expected EINVAL");
        assert!(matches!(must("INFO", enodev()), Err(Failure::Fail(_))));
    }

    #[test]
    fn all_messages() {
        let outcome = all_of([
            Ok(()),
            Err(Failure::Fail("one".to_owned())),
            Err(Failure::Fail("two".to_owned())),
        ]);
        let Err(Failure::Fail(message)) = outcome else {
            panic!("two failures");
        };
        assert_eq!(message, "one\ntwo");
    }

    #[test]
    fn shared_state_skips_when_empty() {
        let shared = Shared::<u32>::new();
        assert!(matches!(shared.with(|_| Ok(())), Err(Failure::Skip(_))));
        shared.set(1);
        shared
            .clone()
            .with(|n| {
                *n += 1;
                Ok(())
            })
            .expect("set");
        assert_eq!(shared.take().expect("set"), 2);
        assert!(matches!(shared.take(), Err(Failure::Skip(_))));
    }

    #[test]
    fn the_plan_is_fixed() {
        let cases = all();
        assert!(cases.len() >= 40, "{} cases", cases.len());
        let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        assert!(names.iter().all(|n| !n.contains('#') && !n.contains('\n')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), cases.len(), "case names are unique");
    }
}
