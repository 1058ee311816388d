//! End-to-end tests: the real `km` binary, real OpenSSH `ssh`/`sshd`, real SQLite, each test in
//! its own temporary HOME. Every sandbox a test creates is destroyed by that test.

#[cfg(feature = "aws")]
mod aws;
mod connections;
mod doctor;
mod hardening;
mod interrupts;
mod isolation;
mod journey;
mod lifecycle;
mod remote;
mod revoke;
mod shell;
mod support;
mod vscode;
mod vscode_server;
