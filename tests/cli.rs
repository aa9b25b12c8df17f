//! The command line's own outputs: shell completions and the man page
//! (generated from the clap definitions), and no progress bar when stderr
//! is not a terminal.

mod common;

use common::{temp_dir, tiny_model};

use common::run_genrepi as run;

#[test]
fn completions_and_man_page_come_from_the_definitions() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, script, stderr) = run(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        for word in ["listen", "replay", "input", "speed", "max-memory"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let (code, page, _) = run(&["manpage"]);
    assert_eq!(code, 0);
    assert!(page.contains(".TH genrepi 1"), "{page}");
    assert!(page.contains("listen"), "{page}");
    let (code, _, stderr) = run(&["completions", "tcsh"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn no_progress_bar_when_stderr_is_not_a_terminal() {
    let dir = temp_dir("cli-progress");
    std::fs::create_dir_all(dir.join("rock")).unwrap();
    common::noise_wav(&dir.join("rock"), "a.wav", 4.0, 5);
    let model = tiny_model();
    let (code, stdout, stderr) = run(&[
        "--model",
        model.to_str().unwrap(),
        "eval",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("clip accuracy"), "{stdout}");
    // Only tract's note under qemu-user (its /proc/cpuinfo has no Features
    // line; never on a Pi) may be there.
    let rest: Vec<&str> = stderr
        .lines()
        .filter(|l| !(l.contains("tract_linalg::arm64") && l.contains("/proc/cpuinfo")))
        .collect();
    assert!(rest.is_empty(), "nothing on a piped stderr: {stderr:?}");
}
