//! The AWS platform through the real `km` binary, inside `scripts/aws-sim` (moto plus SSM
//! commands that really run, per-instance roots prepared by their userdata, and a stand-in
//! `aws` whose `ssm start-session` runs the instance's sshd): `km init --aws`, EC2 sandboxes,
//! DynamoDB records, and the whole VS Code workflow with the real OpenSSH client.
//! Built with `--features aws`.
//!
//! Each test starts its own simulator and ends it by closing its stdin (and by PID if it
//! lingers), which stops every process the simulator started.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use crate::support::{TestEnv, Tunnel, repo_profile, stdout_of, succeeds, wait_until};

/// The simulator's command runs until its stdin closes, after writing down its environment.
const HOLD: &str = r#"printf '%s\n' "$AWS_ENDPOINT_URL" "$PATH" "$AWS_SIM_DIR" "$AWS_SIM_INSTANCE_PROFILE" > "$0.tmp" && mv "$0.tmp" "$0"; exec cat > /dev/null"#;

/// An AWS simulator of this test's own.
struct AwsSim {
    child: std::cell::RefCell<Child>,
    hold: std::cell::RefCell<Option<ChildStdin>>,
    url: String,
    path: String,
    dir: PathBuf,
    instance_profile: String,
    _scratch: tempfile::TempDir,
}

impl AwsSim {
    fn start() -> Self {
        let scratch = tempfile::tempdir().unwrap();
        let written = scratch.path().join("env");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/aws-sim");
        let mut child = Command::new(script)
            .args(["--", "sh", "-c", HOLD])
            .arg(&written)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("scripts/aws-sim (python3 with moto[server])");
        wait_until("aws-sim to start", Duration::from_secs(60), || {
            written.exists()
        });
        let text = std::fs::read_to_string(&written).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        Self {
            hold: std::cell::RefCell::new(child.stdin.take()),
            child: std::cell::RefCell::new(child),
            url: lines[0].to_owned(),
            path: lines[1].to_owned(),
            dir: PathBuf::from(lines[2]),
            instance_profile: lines[3].to_owned(),
            _scratch: scratch,
        }
    }

    /// Adds a fault line (see scripts/aws-sim) that every later request sees.
    fn fault(&self, line: &str) {
        let mut faults = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("faults"))
            .unwrap();
        writeln!(faults, "{line}").unwrap();
    }

    fn clear_faults(&self) {
        std::fs::write(self.dir.join("faults"), "").unwrap();
    }

    /// Sets the simulator's environment on `command`, as `aws-sim -- command` would.
    fn apply(&self, command: &mut Command) {
        command
            .env("AWS_ENDPOINT_URL", &self.url)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("PATH", &self.path);
    }

    /// Ends the simulator: its command's stdin closes, and it tears everything down.
    fn stop(&self) {
        drop(self.hold.borrow_mut().take());
        let mut child = self.child.borrow_mut();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for AwsSim {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One operator on the AWS platform, inside a simulator (shared with other operators').
struct Aws {
    env: TestEnv,
    sim: Rc<AwsSim>,
}

impl Aws {
    fn new() -> Self {
        Self::on(Rc::new(AwsSim::start()), None)
    }

    /// An operator named `operator`, on a simulator of its own.
    fn named(operator: &str) -> Self {
        Self::on(Rc::new(AwsSim::start()), Some(operator))
    }

    /// Another operator, on another machine (its own HOME), sharing this one's AWS.
    fn join(&self, operator: &str) -> Self {
        Self::on(Rc::clone(&self.sim), Some(operator))
    }

    fn on(sim: Rc<AwsSim>, operator: Option<&str>) -> Self {
        let aws = Self {
            env: TestEnv::new(),
            sim,
        };
        let mut args = vec![
            "init",
            "--aws",
            "--region",
            "us-east-1",
            "--instance-profile",
            &aws.sim.instance_profile,
        ];
        if let Some(operator) = operator {
            args.extend(["--operator", operator]);
        }
        aws.ok(&args);
        aws
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.env.command(args);
        self.sim.apply(&mut command);
        command
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "km {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs km, which must fail with exit status `code` (the table in docs/vscode.md).
    fn fails_with(&self, code: i32, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(output.status.code(), Some(code), "km {args:?}: {output:?}");
        String::from_utf8(output.stderr).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(output.status.code(), Some(1), "km {args:?}: {output:?}");
        String::from_utf8(output.stderr).unwrap()
    }

    fn list(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["list", "--json"])).unwrap()
    }

    fn create(&self, alias: Option<&str>) -> String {
        let profile = repo_profile("ec2");
        let mut args = vec!["create", profile.to_str().unwrap()];
        if let Some(alias) = alias {
            args.extend(["--alias", alias]);
        }
        self.ok(&args).trim().to_owned()
    }

    /// Creates a sandbox from a profile written here that extends the repository's `ec2`.
    fn create_from(&self, name: &str, profile_text: &str) -> String {
        let profile = self.env.home().join(format!("{name}.yaml"));
        std::fs::write(&profile, profile_text).unwrap();
        let search = repo_profile("ec2").parent().unwrap().to_path_buf();
        let output = self
            .command(&["create", profile.to_str().unwrap()])
            .env("KM_PROFILE_PATH", &search)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// `ssh` with the managed `~/.ssh/config`, in the simulator's environment.
    fn ssh(&self, host: &str) -> Command {
        let mut command = self.env.ssh_config(host);
        self.sim.apply(&mut command);
        command
    }

    /// Runs a boto3 snippet against the simulator (`ec2` and `region` are set) and returns
    /// what it printed.
    fn boto3(&self, region: &str, body: &str) -> String {
        let script = format!(
            "import boto3, json\n\
             ec2 = boto3.client('ec2', region_name='{region}', endpoint_url='{}', aws_access_key_id='testing', aws_secret_access_key='testing')\n{body}",
            self.sim.url
        );
        let output = Command::new("python3")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// The instances EC2 has for `sandbox`, as km tagged them.
    fn describe(&self, region: &str, sandbox: &str) -> Vec<serde_json::Value> {
        let out = self.boto3(
            region,
            &format!(
                "found = [i for r in ec2.describe_instances(Filters=[{{'Name': 'tag:km:sandbox-id', 'Values': ['{sandbox}']}}])['Reservations'] for i in r['Instances']]\n\
                 out = []\n\
                 for i in found:\n    data = ec2.describe_instance_attribute(InstanceId=i['InstanceId'], Attribute='userData')['UserData'].get('Value', '')\n    out.append({{'id': i['InstanceId'], 'state': i['State']['Name'], 'tags': {{t['Key']: t['Value'] for t in i.get('Tags', [])}}, 'userdata': data}})\n\
                 print(json.dumps(out))\n"
            ),
        );
        serde_json::from_str(&out).unwrap()
    }

    fn instance_of(&self, sandbox: &str) -> String {
        self.describe("us-east-1", sandbox)[0]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

fn decode(base64: &str) -> String {
    let output = Command::new("python3")
        .args([
            "-c",
            "import base64,sys; sys.stdout.write(base64.b64decode(sys.argv[1]).decode())",
        ])
        .arg(base64)
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn init_creates_the_table_once_and_says_when_nothing_changed() {
    let aws = Aws::new();
    let output = aws.run(&[
        "init",
        "--aws",
        "--region",
        "us-east-1",
        "--instance-profile",
        &aws.sim.instance_profile,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("already there"), "{stderr}");
    assert!(stderr.contains("Nothing to change"), "{stderr}");
    assert!(aws.list().is_empty());
}

#[test]
fn create_launches_a_tagged_instance_with_the_key_in_its_userdata_and_destroy_cleans_up() {
    let aws = Aws::new();
    let id = aws.create(Some("cloud-poc"));
    let listed = aws.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["platform"], "aws");
    assert_eq!(listed[0]["status"], "running");
    assert!(aws.ok(&["list"]).contains("cloud-poc"));

    let instances = aws.describe("us-east-1", &id);
    assert_eq!(instances.len(), 1, "{instances:?}");
    let instance = &instances[0];
    assert_eq!(instance["tags"]["km:alias"], "cloud-poc");
    let userdata = decode(instance["userdata"].as_str().unwrap());
    let public =
        std::fs::read_to_string(aws.env.home().join(format!(".km/keys/{id}.pub"))).unwrap();
    assert!(
        userdata.contains(&format!("VSCodeSSHPubKey='{}'", public.trim())),
        "the userdata carries exactly the .pub line"
    );

    aws.ok(&["lock", "cloud-poc"]);
    let stderr = aws.fails_with(6, &["destroy", "cloud-poc", "--yes"]);
    assert!(stderr.contains("is locked"), "{stderr}");
    aws.ok(&["unlock", "cloud-poc"]);

    aws.ok(&["stop", "cloud-poc"]);
    assert_eq!(aws.describe("us-east-1", &id)[0]["state"], "stopped");
    assert_eq!(aws.list()[0]["status"], "stopped");
    // SSM would hold a command for a stopped instance Pending: km refuses at once instead.
    let refused = aws.fails_with(4, &["shell", "cloud-poc", "--", "true"]);
    assert!(
        refused.contains(&format!("sandbox {id} is not running"))
            && refused.contains(&format!("km resume {id}")),
        "{refused}"
    );
    aws.ok(&["resume", "cloud-poc"]);
    assert_eq!(aws.describe("us-east-1", &id)[0]["state"], "running");
    // resume returns once SSM reaches the instance again, so a command runs right away.
    assert_eq!(
        aws.ok(&["shell", "cloud-poc", "--", "echo", "back"]),
        "back\n"
    );

    aws.ok(&["destroy", "cloud-poc", "--yes"]);
    assert!(aws.list().is_empty());
    assert_eq!(aws.describe("us-east-1", &id)[0]["state"], "terminated");
    assert!(!aws.env.home().join(format!(".km/keys/{id}")).exists());
}

#[test]
fn racing_creates_with_one_alias_leave_exactly_one_winner() {
    let aws = Aws::new();
    let profile = repo_profile("ec2");
    let racers: Vec<Child> = (0..4)
        .map(|_| {
            aws.command(&["create", profile.to_str().unwrap(), "--alias", "contested"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outcomes: Vec<_> = racers
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let winners = outcomes.iter().filter(|o| o.status.success()).count();
    assert_eq!(winners, 1, "{outcomes:?}");
    for loser in outcomes.iter().filter(|o| !o.status.success()) {
        let stderr = String::from_utf8_lossy(&loser.stderr);
        assert!(
            stderr.contains("alias contested is already used"),
            "{stderr}"
        );
    }
    let listed = aws.list();
    assert_eq!(listed.len(), 1);
    let numbers: Vec<u64> = listed
        .iter()
        .map(|s| s["number"].as_u64().unwrap())
        .collect();
    aws.ok(&["destroy", "contested", "--yes"]);
    let next = aws.create(None);
    let after = aws.list();
    assert!(
        after[0]["number"].as_u64().unwrap() > numbers[0],
        "numbers are never reused"
    );
    aws.ok(&["destroy", &next, "--yes"]);
}

#[test]
fn a_sandbox_in_another_region_is_launched_and_found_there() {
    let aws = Aws::new();
    let id = aws.create_from(
        "eu",
        "metadata:\n  name: eu\nextends: ec2\nspec:\n  runtime:\n    region: eu-west-1\n",
    );
    assert_eq!(aws.describe("eu-west-1", &id).len(), 1);
    assert!(aws.describe("us-east-1", &id).is_empty());
    assert_eq!(
        aws.list()[0]["status"],
        "running",
        "its status is read in eu-west-1"
    );
    aws.ok(&["destroy", &id, "--yes"]);
    assert_eq!(aws.describe("eu-west-1", &id)[0]["state"], "terminated");
}

#[test]
fn destroy_works_when_the_instance_was_terminated_behind_kms_back() {
    let aws = Aws::new();
    let id = aws.create(None);
    let instance = aws.describe("us-east-1", &id)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    aws.boto3(
        "us-east-1",
        &format!("ec2.terminate_instances(InstanceIds=['{instance}'])"),
    );
    assert_eq!(
        aws.list()[0]["status"],
        "stopped",
        "km sees it is not running"
    );
    aws.ok(&["destroy", &id, "--yes"]);
    assert!(aws.list().is_empty());
    assert!(!aws.env.home().join(format!(".km/keys/{id}")).exists());
}

#[test]
fn an_unreachable_aws_is_a_clear_error_and_leaves_nothing_behind() {
    let aws = Aws::new();
    aws.sim.stop();
    let profile = repo_profile("ec2");
    // Exit 7: unreachable, nothing decided, run it again.
    let stderr = aws.fails_with(7, &["create", profile.to_str().unwrap()]);
    assert!(stderr.contains("cannot reach AWS"), "{stderr}");
    assert!(stderr.contains("run the same km command again"), "{stderr}");
    assert!(
        !stderr.contains("DispatchFailure"),
        "no SDK debug dump: {stderr}"
    );
    let keys: Vec<_> = std::fs::read_dir(aws.env.home().join(".km/keys"))
        .unwrap()
        .collect();
    assert!(keys.is_empty(), "no key was left behind");
    let stderr = aws.fails_with(7, &["list"]);
    assert!(stderr.contains("cannot reach AWS"), "{stderr}");
}

impl Aws {
    /// `km vscode start` in the background, in the simulator's environment.
    fn tunnel(&self, sandbox: &str) -> Tunnel {
        Tunnel::start_with(&self.env, sandbox, |command| self.sim.apply(command))
    }

    /// `ssh` through `km proxy` with `key`, in the simulator's environment.
    fn ssh_with_key(&self, sandbox: &str, key: &Path) -> Command {
        let mut command = self.env.ssh_via_proxy(sandbox, key);
        self.sim.apply(&mut command);
        command.args(["-l", "sandbox"]);
        command
    }
}

/// The VS Code workflow's harness on EC2: an operator in the simulator.
struct Ec2 {
    aws: Aws,
}

impl crate::journey::Harness for Ec2 {
    fn env(&self) -> &TestEnv {
        &self.aws.env
    }

    fn apply(&self, command: &mut Command) {
        self.aws.sim.apply(command);
    }

    fn create(&mut self, alias: &str) -> String {
        self.aws.create(Some(alias))
    }

    fn boundary(&self) -> &'static str {
        "a machine of its own"
    }

    fn stopped_login_says(&self, _id: &str) -> String {
        "SSM cannot reach instance".into()
    }

    fn fdpass(&self) -> bool {
        false
    }

    fn platform_checks(&self, id: &str) {
        // As on a real image, the sandbox user has a uid of its own that owns its home and
        // keys, under sshd's StrictModes; a simulator without root cannot switch uids, so
        // there it shares the simulator's.
        let owners = stdout_of(
            self.aws
                .ssh(&format!("km-{id}"))
                .arg("id -u; stat -c %u \"$HOME\" \"$HOME/.ssh\" \"$HOME/.ssh/authorized_keys\""),
        );
        let owners: Vec<&str> = owners.lines().collect();
        let ours = nix::unistd::getuid();
        if ours.is_root() {
            assert_ne!(owners[0], "0", "{owners:?}");
        } else {
            assert_eq!(owners[0], ours.to_string(), "{owners:?}");
        }
        assert!(
            owners[1..].iter().all(|uid| *uid == owners[0]),
            "{owners:?}"
        );
    }

    fn assert_gone(&self, id: &str) {
        let described = self.aws.describe("us-east-1", id);
        assert_eq!(described[0]["state"], "terminated");
        let instance = described[0]["id"].as_str().unwrap();
        assert!(
            !self.aws.sim.dir.join("instances").join(instance).exists(),
            "the simulated instance is gone"
        );
    }
}

#[test]
fn the_vscode_workflow_on_an_ec2_sandbox_through_ssm() {
    let aws = Aws::new();
    // AWS throttles at its own pace: 3 % of every API call, from a seeded sequence, must be
    // absorbed by the SDK's retries and km's own.
    aws.sim.fault("throttle-random 0.03 11");
    crate::journey::vscode_workflow(&mut Ec2 { aws });
}

/// The files a failed command must leave exactly as they were.
fn snapshot(aws: &Aws, id: &str) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let home = aws.env.home();
    [
        home.join(".ssh/config"),
        home.join(".km/known_hosts"),
        home.join(format!(".km/keys/{id}")),
        home.join(format!(".km/keys/{id}.pub")),
    ]
    .into_iter()
    .map(|path| {
        let bytes = std::fs::read(&path).ok();
        (path, bytes)
    })
    .collect()
}

fn assert_unchanged(aws: &Aws, id: &str, before: &[(PathBuf, Option<Vec<u8>>)]) {
    for (after, (path, bytes)) in snapshot(aws, id).iter().zip(before) {
        assert_eq!(&after.1, bytes, "{} changed", path.display());
    }
}

#[test]
fn ssm_failures_each_give_their_own_error_and_change_nothing() {
    let aws = Aws::new();
    let id = aws.create(None);
    let instance = aws.instance_of(&id);
    let check = format!("Values={instance}");
    let before = snapshot(&aws, &id);

    // A command SSM accepts but never delivers: km stops waiting and says where to look.
    aws.sim.fault("lose-commands");
    let stderr = aws.fails(&["vscode", "rekey", &id, "--yes"]);
    assert!(
        stderr.contains("did not deliver it within 20s (it was cancelled)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("describe-instance-information") && stderr.contains(&check),
        "{stderr}"
    );
    assert_unchanged(&aws, &id, &before);

    aws.sim.clear_faults();
    aws.sim.fault("deny ssm:SendCommand");
    let stderr = aws.fails(&["vscode", "rekey", &id, "--yes"]);
    assert!(stderr.contains("AWS denied the call"), "{stderr}");
    assert!(
        stderr.contains("ssm:SendCommand") && stderr.contains("docs/aws.md"),
        "{stderr}"
    );
    assert_unchanged(&aws, &id, &before);

    aws.sim.clear_faults();
    aws.sim.fault("expired-credentials");
    // Exit status 5: sign in again.
    let stderr = aws.fails_with(5, &["shell", &id, "--", "true"]);
    assert!(stderr.contains("aws sso login"), "{stderr}");
    assert_unchanged(&aws, &id, &before);

    // SSM refuses a caller who may not reach a managed node with InvalidInstanceId, as it
    // refuses a node whose agent never registered: km asks SSM's inventory which it is.
    aws.sim.clear_faults();
    aws.sim.fault("deny-instances");
    let stderr = aws.fails(&["shell", &id, "--", "true"]);
    assert!(
        stderr.contains(&format!(
            "SSM lists instance {instance} of sandbox {id} as online, yet refuses your commands"
        )) && stderr.contains("ssm:SendCommand"),
        "{stderr}"
    );
    assert_unchanged(&aws, &id, &before);

    // No instance profile any more: SSM still knows the managed node, but its agent can no
    // longer take commands, so they stay undelivered.
    aws.sim.clear_faults();
    aws.boto3(
        "us-east-1",
        &format!(
            "for a in ec2.describe_iam_instance_profile_associations(Filters=[{{'Name': 'instance-id', 'Values': ['{instance}']}}])['IamInstanceProfileAssociations']:\n    ec2.disassociate_iam_instance_profile(AssociationId=a['AssociationId'])\n"
        ),
    );
    let stderr = aws.fails(&["shell", &id, "--", "true"]);
    assert!(
        stderr.contains("did not deliver it") && stderr.contains("lost its permission"),
        "{stderr}"
    );
    assert!(stderr.contains(&check), "{stderr}");
    let stderr = aws.fails(&["vscode", "rekey", &id, "--yes"]);
    assert!(stderr.contains("did not deliver it"), "{stderr}");
    assert_unchanged(&aws, &id, &before);
    aws.ok(&["destroy", &id, "--yes"]);
}

#[test]
fn missing_tools_truncated_output_interrupts_and_expired_logins_are_reported() {
    let aws = Aws::new();
    let id = aws.create(None);
    let host = format!("km-{id}");
    let before = snapshot(&aws, &id);

    // No `aws` on PATH: the login fails naming it and where to get it.
    // The system's PATH without any directory that holds an `aws` of its own.
    let system_path = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .filter(|dir| !dir.join("aws").exists())
        .map(|dir| dir.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let refused = aws
        .ssh_with_key(&id, &aws.env.key(&id))
        .env("PATH", &system_path)
        .arg("true")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        said.contains("the AWS CLI (`aws`) is not on PATH")
            && said.contains("getting-started-install"),
        "{said}"
    );
    // `aws` without AWS's session-manager-plugin.
    let only_aws = aws.env.home().join("only-aws");
    std::fs::create_dir(&only_aws).unwrap();
    let sim_bin = aws.sim.dir.join("bin");
    std::os::unix::fs::symlink(sim_bin.join("aws"), only_aws.join("aws")).unwrap();
    let refused = aws
        .ssh_with_key(&id, &aws.env.key(&id))
        .env("PATH", format!("{}:{system_path}", only_aws.display()))
        .arg("true")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("session-manager-plugin is not on PATH"),
        "{said}"
    );
    assert_unchanged(&aws, &id, &before);

    // Output past SSM's 24,000 bytes is reported as cut, never as complete; SSM counts
    // bytes, so 20,000 characters of two-byte text are cut too.
    for script in [
        "head -c 30000 /dev/zero | tr '\\0' x",
        "yes é | tr -d '\\n' | head -c 40000",
    ] {
        let output = aws
            .command(&["shell", &id, "--", "sh", "-c", script])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{script}");
        assert_eq!(output.stdout.len(), 24_000, "{script}");
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(
            said.contains("SSM cut the output") && said.contains(&format!("ssh {host}")),
            "{script}: {said}"
        );
    }

    // Ctrl-C cancels the remote command.
    let marker = format!("remote-sleep-of-{id}");
    let script = format!("sleep 120; : {marker}");
    let mut long = aws
        .command(&["shell", &id, "--", "sh", "-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // km's own command line names the marker too; the others are the remote command's.
    let km = long.id() as i32;
    let remote = || {
        crate::support::processes_naming(Path::new(&marker))
            .into_iter()
            .filter(|pid| *pid != km)
            .count()
    };
    wait_until("the remote sleep to start", Duration::from_secs(20), || {
        remote() > 0
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(long.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = long.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    wait_until(
        "the remote command to be cancelled",
        Duration::from_secs(10),
        || remote() == 0,
    );

    // Expired credentials end the tunnel with the reason instead of retrying forever.
    let mut tunnel = aws.tunnel(&id);
    aws.sim.fault("expired-credentials");
    let _ = aws.ssh(&host).arg("true").output().unwrap();
    let (code, said) = tunnel.ended(Duration::from_secs(20));
    assert_eq!(code, Some(5), "exit status 5: credentials; {said}");
    assert!(
        said.contains("credentials expired") && said.contains("aws sso login"),
        "{said}"
    );
    aws.sim.clear_faults();
    aws.ok(&["destroy", &id, "--yes"]);
}

#[test]
fn two_operators_share_a_sandbox_each_rekeying_without_locking_out_the_other() {
    let alice = Aws::named("alice");
    let id = alice.create(None);
    let bob = alice.join("bob");
    let keys_of = |operator: &Aws| -> Vec<serde_json::Value> {
        serde_json::from_str(&operator.ok(&["vscode", "keys", &id, "--json"])).unwrap()
    };

    // Bob, on his own machine, bootstraps a key of his own; Alice's stays.
    let stderr = String::from_utf8(bob.run(&["vscode", "rekey", &id, "--yes"]).stderr).unwrap();
    assert!(
        stderr.contains("Rekey complete") && stderr.contains("Host key pinned"),
        "{stderr}"
    );
    let seen_by_alice = keys_of(&alice);
    assert_eq!(seen_by_alice.len(), 2, "{seen_by_alice:?}");
    let alice_line = seen_by_alice
        .iter()
        .find(|k| k["operator"] == "alice")
        .unwrap();
    assert_eq!(alice_line["this_machine"], true);
    let bob_line = seen_by_alice
        .iter()
        .find(|k| k["operator"] == "bob")
        .unwrap();
    assert_eq!(bob_line["this_machine"], false);
    let seen_by_bob = keys_of(&bob);
    assert!(
        seen_by_bob
            .iter()
            .any(|k| k["operator"] == "bob" && k["this_machine"] == true)
    );
    assert!(succeeds(
        alice.ssh_with_key(&id, &alice.env.key(&id)).arg("true")
    ));
    assert!(succeeds(
        bob.ssh_with_key(&id, &bob.env.key(&id)).arg("true")
    ));

    // Alice rotates: only her line changes, Bob still gets in.
    alice.ok(&["vscode", "rekey", &id, "--yes"]);
    assert!(succeeds(
        alice.ssh_with_key(&id, &alice.env.key(&id)).arg("true")
    ));
    assert!(succeeds(
        bob.ssh_with_key(&id, &bob.env.key(&id)).arg("true")
    ));
    alice.ok(&["vscode", "status", &id]);
    bob.ok(&["vscode", "status", &id]);

    // Alice revokes Bob: his open session ends, his key is refused, hers still works.
    let mut open = bob
        .ssh_with_key(&id, &bob.env.key(&id))
        .arg("echo in; sleep 30; echo never-revoked")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut session = std::io::BufReader::new(open.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut session, &mut first).unwrap();
    assert_eq!(first, "in\n");
    let stderr =
        String::from_utf8(alice.run(&["vscode", "revoke", &id, "bob", "--yes"]).stderr).unwrap();
    assert!(
        stderr.contains("✓ Revoked") && stderr.contains("(bob)"),
        "{stderr}"
    );
    let mut ended = None;
    wait_until("bob's session to end", Duration::from_secs(15), || {
        ended = open.try_wait().unwrap();
        ended.is_some()
    });
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut session, &mut rest).unwrap();
    assert!(!rest.contains("never-revoked"), "{rest}");
    assert!(
        !succeeds(bob.ssh_with_key(&id, &bob.env.key(&id)).arg("true")),
        "bob's key is refused"
    );
    assert!(succeeds(
        alice.ssh_with_key(&id, &alice.env.key(&id)).arg("true")
    ));
    let left = keys_of(&alice);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["operator"], "alice");
    let stderr = alice.fails(&["vscode", "revoke", &id, "bob", "--yes"]);
    assert!(
        stderr.contains("no key with fingerprint or operator bob"),
        "{stderr}"
    );
    alice.ok(&["destroy", &id, "--yes"]);
}

/// Nothing of a sandbox was made: no record, no key file.
fn assert_nothing_made(aws: &Aws) {
    assert!(aws.list().is_empty());
    let keys: Vec<_> = std::fs::read_dir(aws.env.home().join(".km/keys"))
        .unwrap()
        .collect();
    assert!(keys.is_empty(), "no key was made: {keys:?}");
}

#[test]
fn sidecars_deploy_the_manager_to_lambda_and_a_stale_one_is_refused_before_anything_is_made() {
    let aws = Aws::new();
    let init = |extra: &[&str]| {
        let mut args = vec![
            "init",
            "--aws",
            "--region",
            "us-east-1",
            "--instance-profile",
            &aws.sim.instance_profile,
        ];
        args.extend(extra);
        aws.run(&args)
    };
    let sidecars = ["--sidecars", "--artifact-bucket", "km-artifacts"];
    let profile = repo_profile("ec2");
    let create_remote = || aws.fails(&["create", profile.to_str().unwrap(), "--remote"]);

    let stderr = create_remote();
    assert!(
        stderr.contains("no management component is deployed"),
        "{stderr}"
    );
    let stderr = String::from_utf8(init(&["--sidecars"]).stderr).unwrap();
    assert!(stderr.contains("needs --artifact-bucket"), "{stderr}");
    // The platform's one-time setup: a bucket and a function for the manager.
    let setup = aws.boto3(
        "us-east-1",
        "import io, zipfile\n\
         kw = dict(region_name='us-east-1', endpoint_url=ec2.meta.endpoint_url, aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         boto3.client('s3', **kw).create_bucket(Bucket='km-artifacts')\n\
         code = io.BytesIO(); zipfile.ZipFile(code, 'w').writestr('bootstrap', '#!/bin/sh\\n')\n\
         boto3.client('lambda', **kw).create_function(FunctionName='km-manager', Runtime='provided.al2023', Handler='bootstrap', Role='arn:aws:iam::123456789012:role/km-sandbox', Code={'ZipFile': code.getvalue()})\n\
         print('ok')\n",
    );
    assert_eq!(setup.trim(), "ok");

    // A package Lambda's provided.al2023 could not start is refused before anything is uploaded.
    let script = aws.env.home().join("not-km");
    std::fs::write(&script, "#!/bin/sh\necho '{}'\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut with_script = sidecars.to_vec();
    with_script.extend(["--manager-binary", script.to_str().unwrap()]);
    let refused = init(&with_script);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("cannot run as Lambda function km-manager: it is not a 64-bit ELF")
            && said.contains("nothing was deployed"),
        "{said}"
    );

    let deployed = init(&sidecars);
    let stderr = String::from_utf8_lossy(&deployed.stderr);
    assert!(deployed.status.success(), "{stderr}");
    assert!(
        stderr.contains("deployed: s3://km-artifacts/km-manager/"),
        "{stderr}"
    );
    let read_back = || -> serde_json::Value {
        let out = aws.boto3(
            "us-east-1",
            "import base64, hashlib\n\
             kw = dict(region_name='us-east-1', endpoint_url=ec2.meta.endpoint_url, aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             s3 = boto3.client('s3', **kw)\n\
             keys = [o['Key'] for o in s3.list_objects_v2(Bucket='km-artifacts').get('Contents', [])]\n\
             body = s3.get_object(Bucket='km-artifacts', Key=keys[0])['Body'].read()\n\
             fn = boto3.client('lambda', **kw).get_function_configuration(FunctionName='km-manager')\n\
             print(json.dumps({'keys': keys, 'env': fn['Environment']['Variables'], 'code': fn['CodeSha256'], 'object': base64.b64encode(hashlib.sha256(body).digest()).decode()}))\n",
        );
        serde_json::from_str(&out).unwrap()
    };
    let state = read_back();
    assert_eq!(state["keys"].as_array().unwrap().len(), 1, "{state}");
    assert_eq!(
        state["code"], state["object"],
        "the function runs the uploaded artifact"
    );
    // What was uploaded starts on provided.al2023: no glibc symbol newer than its 2.34, read
    // with binutils rather than km's own reader.
    let artifact = aws.env.home().join("bootstrap");
    aws.boto3(
        "us-east-1",
        &format!(
            "import io, zipfile\n\
             s3 = boto3.client('s3', region_name='us-east-1', endpoint_url=ec2.meta.endpoint_url, aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             body = s3.get_object(Bucket='km-artifacts', Key={:?})['Body'].read()\n\
             open({:?}, 'wb').write(zipfile.ZipFile(io.BytesIO(body)).read('bootstrap'))\n",
            state["keys"][0].as_str().unwrap(),
            artifact.to_str().unwrap()
        ),
    );
    let symbols = Command::new("objdump")
        .arg("-T")
        .arg(&artifact)
        .output()
        .unwrap();
    assert!(symbols.status.success(), "{symbols:?}");
    let newest = String::from_utf8_lossy(&symbols.stdout)
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .unwrap();
    assert!(newest <= (2, 34), "the artifact needs glibc {newest:?}");
    assert!(
        state["env"]["KM_REQUEST_FIELDS"]
            .as_str()
            .unwrap()
            .contains("VSCodeSSHPubKey"),
        "{state}"
    );
    let again = String::from_utf8(init(&sidecars).stderr).unwrap();
    assert!(again.contains("already"), "{again}");
    assert_eq!(read_back()["keys"], state["keys"], "nothing uploaded again");

    // A manager that does not know VSCodeSSHPubKey, as an older km deployed it.
    aws.boto3(
        "us-east-1",
        "kw = dict(region_name='us-east-1', endpoint_url=ec2.meta.endpoint_url, aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         lam = boto3.client('lambda', **kw)\n\
         env = lam.get_function_configuration(FunctionName='km-manager')['Environment']['Variables']\n\
         env['KM_REQUEST_FIELDS'] = ','.join(f for f in env['KM_REQUEST_FIELDS'].split(',') if f != 'VSCodeSSHPubKey')\n\
         env['KM_BUILD_ID'] = 'sha256:0123456789abcdef'\n\
         lam.update_function_configuration(FunctionName='km-manager', Environment={'Variables': env})\n",
    );
    let warned = String::from_utf8(init(&[]).stderr).unwrap();
    assert!(warned.contains("does not know VSCodeSSHPubKey"), "{warned}");
    let stderr = create_remote();
    assert!(
        stderr.contains("(does not know VSCodeSSHPubKey) — run: km init --sidecars"),
        "{stderr}"
    );
    assert_nothing_made(&aws);

    // Brought up to date, the check passes (the hand-off itself: aws/remote.rs).
    assert!(init(&sidecars).status.success());
    let warned = String::from_utf8(init(&[]).stderr).unwrap();
    assert!(!warned.contains("does not know"), "{warned}");
}

#[test]
fn a_sandbox_without_vscode_gets_an_interactive_ssm_shell() {
    let aws = Aws::new();
    let id = aws.create_from(
        "ec2-headless",
        "metadata:\n  name: ec2-headless\nextends: ec2\nspec:\n  cli:\n    vscodeEnabled: false\n",
    );
    assert!(
        !aws.env.key(&id).exists(),
        "no key for a sandbox without VS Code"
    );
    // No sshd and no key: `km shell` opens an SSM shell session instead.
    let mut shell = aws
        .command(&["shell", &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    shell
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo in-an-ssm-shell; pwd; exit 0\n")
        .unwrap();
    let output = shell.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("in-an-ssm-shell") && stdout.contains("/home"),
        "{stdout}"
    );
    let stderr = aws.fails_with(6, &["vscode", "start", &id]);
    assert!(stderr.contains("without vscodeEnabled: true"), "{stderr}");
    aws.ok(&["destroy", &id, "--yes"]);
}

#[test]
fn arm64_instance_types_get_an_arm64_image_and_a_mismatching_ami_is_refused_before_launch() {
    let aws = Aws::new();
    let id = aws.create_from(
        "graviton",
        "metadata:\n  name: graviton\nextends: ec2\nspec:\n  runtime:\n    instanceType: t4g.small\n",
    );
    let images = aws.boto3(
        "us-east-1",
        &format!(
            "ssm = boto3.client('ssm', region_name='us-east-1', endpoint_url='{}', aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             arm = ssm.get_parameter(Name='/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64')['Parameter']['Value']\n\
             x86 = ssm.get_parameter(Name='/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64')['Parameter']['Value']\n\
             used = [i['ImageId'] for r in ec2.describe_instances(Filters=[{{'Name': 'tag:km:sandbox-id', 'Values': ['{id}']}}])['Reservations'] for i in r['Instances']]\n\
             print(json.dumps({{'arm': arm, 'x86': x86, 'used': used}}))\n",
            aws.sim.url
        ),
    );
    let images: serde_json::Value = serde_json::from_str(&images).unwrap();
    assert_eq!(images["used"][0], images["arm"], "{images}");
    aws.ok(&["destroy", &id, "--yes"]);

    let profile = aws.env.home().join("mismatch.yaml");
    std::fs::write(
        &profile,
        format!(
            "metadata:\n  name: mismatch\nextends: ec2\nspec:\n  runtime:\n    instanceType: t4g.small\n    ami: {}\n",
            images["x86"].as_str().unwrap()
        ),
    )
    .unwrap();
    let output = aws
        .command(&["create", profile.to_str().unwrap()])
        .env("KM_PROFILE_PATH", repo_profile("ec2").parent().unwrap())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains("is built for x86_64, but instance type t4g.small runs arm64"),
        "{said}"
    );
    assert_eq!(
        aws.boto3(
            "us-east-1",
            "print(sum(1 for r in ec2.describe_instances()['Reservations'] for i in r['Instances'] if i['State']['Name'] != 'terminated'))"
        )
        .trim(),
        "0",
        "nothing new was launched"
    );
}

#[test]
fn a_network_saved_for_one_region_is_not_used_in_another() {
    let aws = Aws::new();
    let network = aws.boto3(
        "us-east-1",
        "vpc = ec2.describe_vpcs(Filters=[{'Name': 'isDefault', 'Values': ['true']}])['Vpcs'][0]['VpcId']\n\
         subnet = ec2.describe_subnets(Filters=[{'Name': 'vpc-id', 'Values': [vpc]}])['Subnets'][0]['SubnetId']\n\
         group = ec2.create_security_group(GroupName='km-test', Description='km test', VpcId=vpc)['GroupId']\n\
         print(json.dumps({'subnet': subnet, 'group': group}))\n",
    );
    let network: serde_json::Value = serde_json::from_str(&network).unwrap();
    aws.ok(&[
        "init",
        "--aws",
        "--region",
        "us-east-1",
        "--instance-profile",
        &aws.sim.instance_profile,
        "--subnet",
        network["subnet"].as_str().unwrap(),
        "--security-group",
        network["group"].as_str().unwrap(),
    ]);
    let id = aws.create_from(
        "eu",
        "metadata:\n  name: eu\nextends: ec2\nspec:\n  runtime:\n    region: eu-west-1\n",
    );
    assert_eq!(aws.describe("eu-west-1", &id).len(), 1);
    aws.ok(&["destroy", &id, "--yes"]);
}

#[test]
fn without_an_instance_profile_init_warns_and_create_launches_nothing() {
    let aws = Aws::new();
    let said =
        String::from_utf8(aws.run(&["init", "--aws", "--region", "us-east-1"]).stderr).unwrap();
    assert!(
        said.contains("no --instance-profile")
            && said.contains("km init --aws --region us-east-1 --instance-profile"),
        "{said}"
    );
    let profile = repo_profile("ec2");
    let refused = aws.fails(&["create", profile.to_str().unwrap()]);
    assert!(
        refused.contains("SSM could never reach the instance; nothing was launched")
            && refused.contains("km init --aws --region us-east-1 --instance-profile"),
        "{refused}"
    );
    assert!(aws.list().is_empty());
    assert_eq!(
        aws.boto3(
            "us-east-1",
            "print(sum(len(r['Instances']) for r in ec2.describe_instances()['Reservations']))"
        )
        .trim(),
        "0"
    );
}

#[test]
fn a_create_whose_commands_ssm_refuses_to_the_caller_fails_in_seconds_and_rolls_back() {
    let aws = Aws::new();
    aws.sim.fault("deny-instances");
    let profile = repo_profile("ec2");
    let refused = aws.fails(&["create", profile.to_str().unwrap()]);
    assert!(
        refused.contains("as online, yet refuses your commands to it")
            && refused.contains("ssm:SendCommand"),
        "{refused}"
    );
    assert!(aws.list().is_empty());
    assert_eq!(
        aws.boto3(
            "us-east-1",
            "print(sorted({i['State']['Name'] for r in ec2.describe_instances()['Reservations'] for i in r['Instances']}))"
        )
        .trim(),
        "['terminated']"
    );
}

#[test]
fn a_session_to_a_stopped_sshd_ends_at_once_and_status_names_the_fix() {
    let aws = Aws::new();
    let id = aws.create(None);
    let instance = aws.instance_of(&id);
    let key = aws.env.key(&id);
    assert!(succeeds(aws.ssh_with_key(&id, &key).arg("true")));
    // An administrator stops sshd as root, over SSM.
    let status = aws.boto3(
        "us-east-1",
        &format!(
            "import time\n\
             ssm = boto3.client('ssm', region_name='us-east-1', endpoint_url=ec2.meta.endpoint_url, aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             sent = ssm.send_command(InstanceIds=['{instance}'], DocumentName='AWS-RunShellScript', Parameters={{'commands': ['systemctl stop sshd']}})\n\
             while True:\n    got = ssm.get_command_invocation(CommandId=sent['Command']['CommandId'], InstanceId='{instance}')\n    if got['Status'] not in ('Pending', 'InProgress', 'Delayed'):\n        break\n    time.sleep(0.2)\n\
             print(got['Status'])\n"
        ),
    );
    assert_eq!(status.trim(), "Success");
    // As on AWS, the session opens and the instance's side closes: ssh sees the stream end
    // before any banner.
    let refused = aws.ssh_with_key(&id, &key).arg("true").output().unwrap();
    assert_eq!(refused.status.code(), Some(255), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Connection closed"),
        "{refused:?}"
    );
    let output = aws.run(&["vscode", "status", &id]);
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "sshd is not serving; restart the sandbox: km stop {id} && km resume {id}"
        )),
        "{said}"
    );
    // The fix it names works: the enabled sshd starts with the instance.
    aws.ok(&["stop", &id]);
    aws.ok(&["resume", &id]);
    assert!(succeeds(aws.ssh_with_key(&id, &key).arg("true")));
    aws.ok(&["destroy", &id, "--yes"]);
}

#[test]
fn the_vscode_server_is_placed_in_an_ec2_sandbox_over_its_ssm_session() {
    let aws = Aws::new();
    let id = aws.create(None);
    let commit = "5555555555555555555555555555555555555555";
    let arch = if std::env::consts::ARCH == "aarch64" {
        "arm64"
    } else {
        "x64"
    };
    let tarball = crate::vscode_server::stand_in(aws.env.home(), "server", arch, commit);
    let placed = aws.run(&[
        "vscode",
        "server",
        &id,
        "--commit",
        commit,
        "--from",
        tarball.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&placed.stderr);
    assert!(
        placed.status.success() && said.contains("placed in"),
        "{said}"
    );
    let seen = aws.ok(&[
        "shell",
        &id,
        "--",
        "sh",
        "-c",
        &format!("~/.vscode-server/bin/{commit}/bin/code-server; ls ~/.vscode-server/cli/servers"),
    ]);
    assert!(
        seen.contains(&format!("stand-in server {commit}"))
            && seen.contains(&format!("Stable-{commit}")),
        "{seen}"
    );
    aws.ok(&["destroy", &id, "--yes"]);
}

#[test]
fn an_instance_profile_given_by_arn_is_launched_with_by_arn() {
    let aws = Aws::new();
    let arn = format!(
        "arn:aws:iam::123456789012:instance-profile/{}",
        aws.sim.instance_profile
    );
    aws.ok(&[
        "init",
        "--aws",
        "--region",
        "us-east-1",
        "--instance-profile",
        &arn,
    ]);
    let id = aws.create(None);
    assert_eq!(aws.list()[0]["status"], "running");
    aws.ok(&["destroy", &id, "--yes"]);
}

#[test]
fn faults_on_every_protocol_are_reported_in_kms_words_and_change_nothing() {
    let aws = Aws::new();
    // EC2's query API, answering in its XML.
    aws.sim.fault("deny ec2:RunInstances");
    let profile = repo_profile("ec2");
    let stderr = aws.fails(&["create", profile.to_str().unwrap()]);
    assert!(
        stderr.contains("AWS denied the call (UnauthorizedOperation")
            && stderr.contains("ec2:RunInstances"),
        "{stderr}"
    );
    assert!(aws.list().is_empty());
    aws.sim.clear_faults();
    let id = aws.create(None);
    aws.sim.fault("expired-credentials ec2");
    let stderr = aws.fails_with(5, &["stop", &id]);
    assert!(
        stderr.contains("AWS credentials are missing or no longer valid")
            && stderr.contains("RequestExpired"),
        "{stderr}"
    );
    // Asking whether it runs fails the same way: an unanswerable platform is never "stopped".
    let stderr = aws.fails_with(5, &["vscode", "status", &id]);
    assert!(stderr.contains("RequestExpired"), "{stderr}");
    let listed = aws.run(&["list", "--json"]);
    let said = String::from_utf8_lossy(&listed.stderr);
    assert!(listed.status.success(), "{said}");
    assert!(
        said.contains("cannot ask the aws platform whether its 1 sandbox(es) run"),
        "{said}"
    );
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        rows[0]["status"], "running",
        "the recorded status, not a guess"
    );
    aws.sim.clear_faults();
    // A platform or table that throttles past km's retries decided nothing: exit 7, and the
    // hint is to run the same command again.
    aws.sim.fault("throttle ec2:DescribeInstances");
    let stderr = aws.fails_with(7, &["vscode", "status", &id]);
    assert!(
        stderr.contains("RequestLimitExceeded") && stderr.contains("run the same km command again"),
        "{stderr}"
    );
    aws.sim.clear_faults();
    aws.sim.fault("throttle dynamodb:Scan");
    let stderr = aws.fails_with(7, &["list"]);
    assert!(stderr.contains("ThrottlingException"), "{stderr}");
    aws.sim.clear_faults();
    // A resume that fails points at the instance's console, not at a directory on this machine.
    aws.ok(&["stop", &id]);
    aws.sim.fault("deny ec2:StartInstances");
    let stderr = aws.fails(&["resume", &id]);
    assert!(
        stderr.contains("hint: its boot output is on the instance's console: aws ec2 get-console-output --region us-east-1 --instance-id i-")
            && !stderr.contains(".km/sandboxes"),
        "{stderr}"
    );
    aws.sim.clear_faults();
    aws.ok(&["resume", &id]);
    assert_eq!(aws.list()[0]["status"], "running");

    // A session SSM refuses.
    aws.ok(&["vscode", "start", &id, "--proxy"]);
    aws.sim.fault("deny ssm:StartSession");
    let refused = aws.ssh(&format!("km-{id}")).arg("true").output().unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(said.contains("AWS denied the SSM session"), "{said}");
    aws.sim.clear_faults();
    assert!(succeeds(aws.ssh(&format!("km-{id}")).arg("true")));

    // S3's REST API, while deploying the management component.
    aws.boto3(
        "us-east-1",
        "import io, zipfile\n\
         kw = dict(region_name='us-east-1', endpoint_url=ec2.meta.endpoint_url, aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         boto3.client('s3', **kw).create_bucket(Bucket='km-artifacts')\n\
         code = io.BytesIO(); zipfile.ZipFile(code, 'w').writestr('bootstrap', '#!/bin/sh\\n')\n\
         boto3.client('lambda', **kw).create_function(FunctionName='km-manager', Runtime='provided.al2023', Handler='bootstrap', Role='arn:aws:iam::123456789012:role/km-sandbox', Code={'ZipFile': code.getvalue()})\n",
    );
    aws.sim.fault("deny s3:PutObject");
    let sidecars = [
        "init",
        "--aws",
        "--region",
        "us-east-1",
        "--instance-profile",
        &aws.sim.instance_profile,
        "--sidecars",
        "--artifact-bucket",
        "km-artifacts",
    ];
    let stderr = aws.fails(&sidecars);
    assert!(stderr.contains("AccessDenied"), "{stderr}");
    // Lambda's REST API.
    aws.sim.clear_faults();
    aws.sim.fault("deny lambda:UpdateFunctionCode");
    let stderr = aws.fails(&sidecars);
    assert!(stderr.contains("AccessDenied"), "{stderr}");
    aws.sim.clear_faults();
    aws.ok(&sidecars);
    aws.ok(&["destroy", &id, "--yes"]);
}

/// The DynamoDB items of the record table, as `pk` values.
fn table_keys(aws: &Aws) -> Vec<String> {
    let out = aws.boto3(
        "us-east-1",
        "db = boto3.client('dynamodb', region_name='us-east-1', endpoint_url=ec2.meta.endpoint_url, aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         print(json.dumps([i['pk']['S'] for i in db.scan(TableName='km-sandboxes')['Items']]))\n",
    );
    serde_json::from_str(&out).unwrap()
}

#[test]
fn a_local_sandbox_stays_on_its_machine_when_the_team_shares_a_table() {
    let alice = Aws::named("alice");
    let bob = alice.join("bob");
    let cloud = bob.create(Some("shared-one"));
    // Alice, set up for the team's table, makes a local sandbox.
    let profile = repo_profile("default");
    let local = alice.ok(&["create", profile.to_str().unwrap(), "--alias", "mine"]);
    let local = local.trim().to_owned();
    assert!(
        !table_keys(&alice).iter().any(|k| k.contains(&local)),
        "the local sandbox is not in the team's table"
    );
    let listed = alice.list();
    let platforms: Vec<(&str, &str)> = listed
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["platform"].as_str().unwrap()))
        .collect();
    assert!(
        platforms.contains(&(local.as_str(), "local")),
        "{platforms:?}"
    );
    assert!(
        platforms.contains(&(cloud.as_str(), "aws")),
        "{platforms:?}"
    );
    assert!(alice.ok(&["list"]).contains("PLATFORM"));
    // Bob sees the team's sandbox only, and cannot reach Alice's.
    assert!(!bob.list().iter().any(|s| s["id"] == local.as_str()));
    let refused = bob.fails_with(3, &["destroy", &local, "--yes"]);
    assert!(refused.contains("no sandbox matches"), "{refused}");
    // References resolve across both; an alias names one sandbox wherever it lives.
    assert_eq!(alice.ok(&["shell", "mine", "--", "echo", "here"]), "here\n");
    let taken = alice.fails(&["create", profile.to_str().unwrap(), "--alias", "shared-one"]);
    assert!(
        taken.contains("alias shared-one is already used"),
        "{taken}"
    );
    // Both stores numbered their first sandbox 1: the number is ambiguous, and says so.
    let ambiguous = alice.fails(&["shell", "1", "--", "true"]);
    assert!(
        ambiguous.contains("names more than one sandbox")
            && ambiguous.contains(&local)
            && ambiguous.contains(&cloud),
        "{ambiguous}"
    );
    alice.ok(&["destroy", &local, "--yes"]);
    alice.ok(&["destroy", &cloud, "--yes"]);
}

#[test]
fn doctor_moves_a_local_sandbox_an_older_km_put_in_the_team_table() {
    let aws = Aws::new();
    let profile = repo_profile("default");
    let id = aws
        .ok(&["create", profile.to_str().unwrap()])
        .trim()
        .to_owned();
    // As an older km left it: the record in the team's table, none on this machine.
    aws.boto3(
        "us-east-1",
        &format!(
            "db = boto3.client('dynamodb', region_name='us-east-1', endpoint_url=ec2.meta.endpoint_url, aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             db.put_item(TableName='km-sandboxes', Item={{'pk': {{'S': 'sandbox#{id}'}}, 'id': {{'S': '{id}'}}, 'number': {{'N': '7'}}, 'profile': {{'S': 'default'}}, 'profile_path': {{'S': '/p.yaml'}}, 'platform': {{'S': 'local'}}, 'status': {{'S': 'running'}}, 'locked': {{'BOOL': False}}, 'created_at': {{'N': '1'}}, 'vscode_enabled': {{'BOOL': True}}, 'resources': {{'S': '{{}}'}}}})\n"
        ),
    );
    let local_db = aws.env.home().join(".km/state.db");
    let removed = Command::new("python3")
        .arg("-c")
        .arg("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('DELETE FROM sandboxes WHERE id = ?', (sys.argv[2],)); c.commit()")
        .arg(&local_db)
        .arg(&id)
        .status()
        .unwrap();
    assert!(removed.success());
    let found = String::from_utf8(aws.run(&["doctor"]).stdout).unwrap();
    assert!(
        found.contains("local sandbox in the team's table") && found.contains(&id),
        "{found}"
    );
    // Each platform this machine uses is checked: AWS's session tools are found (the
    // simulator's), and missing ones are named with where to get them.
    assert!(found.contains("✓ ssm sessions: "), "{found}");
    assert!(found.contains("✓ isolation: "), "{found}");
    let without_tools = aws
        .command(&["doctor"])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&without_tools.stdout);
    assert!(
        said.contains("✗ ssm sessions: the AWS CLI (`aws`) is not on PATH")
            || said.contains("✗ ssm sessions: AWS's session-manager-plugin is not on PATH"),
        "{said}"
    );
    let fixed = String::from_utf8(aws.run(&["doctor", "--fix"]).stdout).unwrap();
    assert!(
        fixed.contains("moved to this machine's own records"),
        "{fixed}"
    );
    assert!(!table_keys(&aws).iter().any(|k| k.contains(&id)));
    assert_eq!(aws.ok(&["shell", &id, "--", "echo", "ok"]), "ok\n");
    aws.ok(&["destroy", &id, "--yes"]);
}

mod remote;
