//! `kubepki completion` and `kubepki man`: what an operator installs from them works.

use std::collections::BTreeSet;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kubepki");

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "kubepki {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// What bash offers after `words` (the last one being completed), with the generated script.
fn bash_complete(words: &[&str]) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("kubepki.bash");
    std::fs::write(&script, run(&["completion", "bash"])).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prog = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; _kubepki kubepki '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let out = Command::new("bash").arg("-c").arg(prog).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_commands_and_flags() {
    let top = bash_complete(&["kubepki", "ce"]);
    assert!(top.contains("certs"), "{top:?}");
    let sub = bash_complete(&["kubepki", "certs", "re"]);
    assert!(
        sub.contains("renew") && sub.contains("restore") && sub.contains("recover"),
        "{sub:?}"
    );
    let flags = bash_complete(&["kubepki", "certs", "renew", "--exp"]);
    assert!(flags.contains("--expiring-within"), "{flags:?}");
    let agent = bash_complete(&["kubepki", "agent", "--renew-"]);
    assert!(agent.contains("--renew-before"), "{agent:?}");
}

#[test]
fn every_shell_gets_a_script_naming_the_commands() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let s = run(&["completion", shell]);
        for cmd in ["check-expiration", "agent", "rotate"] {
            assert!(s.contains(cmd), "{shell} script lacks {cmd}");
        }
    }
    let bad = Command::new(BIN)
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

/// Every command has a page, and each page documents every long flag its `--help` lists.
#[test]
fn man_pages_cover_every_command_and_flag() {
    let dir = tempfile::tempdir().unwrap();
    run(&["man", "--dir", dir.path().to_str().unwrap()]);
    // The synopsis names the command as typed, and offers no --version a subcommand refuses.
    let page =
        std::fs::read_to_string(dir.path().join("kubepki-certs-check-expiration.1")).unwrap();
    assert!(
        page.contains("kubepki certs check\\-expiration\\fR"),
        "{page}"
    );
    assert!(!page.contains("\\-\\-version"), "{page}");
    let top = run(&["man"]);
    assert!(
        top.contains(".TH kubepki 1"),
        "{}",
        &top[..200.min(top.len())]
    );
    for (page, cmd) in [
        ("kubepki-init.1", vec!["init"]),
        ("kubepki-certs-renew.1", vec!["certs", "renew"]),
        (
            "kubepki-certs-check-expiration.1",
            vec!["certs", "check-expiration"],
        ),
        ("kubepki-ca-rotate-trust.1", vec!["ca", "rotate", "trust"]),
        ("kubepki-agent.1", vec!["agent"]),
        ("kubepki-controller.1", vec!["controller"]),
        ("kubepki-kubeconfig-user.1", vec!["kubeconfig", "user"]),
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH ") && text.contains("0.1.0"), "{page}");
        let mut args = cmd.clone();
        args.push("--help");
        let help = run(&args);
        for flag in help
            .split_whitespace()
            .filter(|w| w.starts_with("--") && w.len() > 3)
            .map(|w| w.trim_end_matches([',', '.', ')', ']', '=']))
            .filter(|w| {
                w.chars()
                    .skip(2)
                    .all(|c| c.is_ascii_lowercase() || c == '-')
            })
        {
            // roff escapes '-' as '\-'.
            let roff = flag.replace('-', "\\-");
            assert!(text.contains(&roff), "{page} does not document {flag}");
        }
    }
}
