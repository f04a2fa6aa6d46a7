//! Running the current test binary again, in a child process: for tests of
//! what a signal does to a whole process.

use std::process::{Command, Output};

/// The variable naming a command line to run foreign test binaries with
/// (`qemu-aarch64 -E LD_LIBRARY_PATH=…`), set by `scripts/cross`: a child
/// then starts through it, so no binfmt_misc registration is needed.
pub const RUNNER_VARIABLE: &str = "CRANELIFT_EXN_TEST_RUNNER";

/// A command that runs this test binary again: directly, or through the
/// command line in [`RUNNER_VARIABLE`] when it is set (words separated by
/// white space).
pub fn this_test_binary() -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let runner = std::env::var(RUNNER_VARIABLE).unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(exe);
            command
        }
        None => Command::new(exe),
    }
}

/// The variable that tells a child started by [`in_child`] which test it
/// runs `body` for.
const CHILD_VARIABLE: &str = "CRANELIFT_EXN_TEST_CHILD";

/// Run `body` in a child process (this test binary, only the test `name`,
/// which calls this): in the child, run `body`, print "child done" and exit
/// 0; in the parent, return how the child ended.
pub fn in_child(name: &str, body: impl FnOnce()) -> Output {
    if std::env::var(CHILD_VARIABLE).as_deref() == Ok(name) {
        body();
        println!("child done");
        std::process::exit(0);
    }
    this_test_binary()
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_VARIABLE, name)
        .output()
        .expect("the test binary runs again")
}

/// How a child ended, with everything it printed: for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "{:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Assert that a child started by [`in_child`] ran its body to the end
/// ("child done") and exited 0; a child that ran no test (a wrong name)
/// fails this too.
#[track_caller]
pub fn assert_child_succeeded(output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("child done"),
        "the child failed: {}",
        describe(output)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runner_prefixes_the_binary() {
        // SAFETY: this crate's unit tests do not read the environment from
        // other threads.
        unsafe { std::env::set_var(RUNNER_VARIABLE, "qemu-x -E A=b") };
        let command = this_test_binary();
        let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
        assert_eq!(command.get_program(), "qemu-x");
        assert_eq!(&args[..2], ["-E", "A=b"]);
        assert_eq!(args[2], std::env::current_exe().unwrap().as_os_str());
        unsafe { std::env::set_var(RUNNER_VARIABLE, "") };
        assert_eq!(
            this_test_binary().get_program(),
            std::env::current_exe().unwrap().as_os_str()
        );
        unsafe { std::env::remove_var(RUNNER_VARIABLE) };
    }
}
