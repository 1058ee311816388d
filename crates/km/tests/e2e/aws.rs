//! The AWS platform against the moto server (a local AWS emulator), through the real `km`
//! binary: `km init --aws`, EC2 sandboxes and DynamoDB records. Built with `--features aws`.
//!
//! Each test starts its own moto server on a free loopback port and stops it by PID. moto
//! emulates EC2 and DynamoDB faithfully; SSM commands and sessions are the next part's work.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{TestEnv, free_port, repo_profile, wait_until};

/// A moto server of this test's own, stopped by PID when dropped.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with moto[server] installed (pip install 'moto[server]')");
        wait_until("moto to listen", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One operator on the AWS platform, against one moto.
struct Aws {
    env: TestEnv,
    moto: Moto,
}

impl Aws {
    fn new() -> Self {
        let aws = Self {
            env: TestEnv::new(),
            moto: Moto::start(),
        };
        aws.ok(&["init", "--aws", "--region", "us-east-1"]);
        aws
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.env.command(args);
        command
            .env("AWS_ENDPOINT_URL", &self.moto.url)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true");
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

    /// `aws ec2` through boto3 against the same moto, to see what km did.
    fn describe(&self, region: &str, sandbox: &str) -> Vec<serde_json::Value> {
        let script = format!(
            "import boto3, json\n\
             ec2 = boto3.client('ec2', region_name='{region}', endpoint_url='{}', aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             found = [i for r in ec2.describe_instances(Filters=[{{'Name': 'tag:km:sandbox-id', 'Values': ['{sandbox}']}}])['Reservations'] for i in r['Instances']]\n\
             out = []\n\
             for i in found:\n    data = ec2.describe_instance_attribute(InstanceId=i['InstanceId'], Attribute='userData')['UserData'].get('Value', '')\n    out.append({{'id': i['InstanceId'], 'state': i['State']['Name'], 'tags': {{t['Key']: t['Value'] for t in i.get('Tags', [])}}, 'userdata': data}})\n\
             print(json.dumps(out))\n",
            self.moto.url
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
        serde_json::from_slice(&output.stdout).unwrap()
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
    let output = aws.run(&["init", "--aws", "--region", "us-east-1"]);
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
    let stderr = aws.fails(&["destroy", "cloud-poc", "--yes"]);
    assert!(stderr.contains("is locked"), "{stderr}");
    aws.ok(&["unlock", "cloud-poc"]);

    aws.ok(&["stop", "cloud-poc"]);
    assert_eq!(aws.describe("us-east-1", &id)[0]["state"], "stopped");
    assert_eq!(aws.list()[0]["status"], "stopped");
    aws.ok(&["resume", "cloud-poc"]);
    assert_eq!(aws.describe("us-east-1", &id)[0]["state"], "running");

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
    let profile = aws.env.home().join("eu.yaml");
    std::fs::write(
        &profile,
        "metadata:\n  name: eu\nextends: ec2\nspec:\n  runtime:\n    region: eu-west-1\n",
    )
    .unwrap();
    let search = repo_profile("ec2").parent().unwrap().to_path_buf();
    let output = aws
        .command(&["create", profile.to_str().unwrap()])
        .env("KM_PROFILE_PATH", &search)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
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
    let terminated = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import boto3; boto3.client('ec2', region_name='us-east-1', endpoint_url='{}', aws_access_key_id='t', aws_secret_access_key='t').terminate_instances(InstanceIds=['{instance}'])",
            aws.moto.url
        ))
        .status()
        .unwrap();
    assert!(terminated.success());
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
    let mut aws = Aws::new();
    aws.moto.stop();
    let profile = repo_profile("ec2");
    let stderr = aws.fails(&["create", profile.to_str().unwrap()]);
    assert!(stderr.contains("cannot reach AWS"), "{stderr}");
    assert!(
        !stderr.contains("DispatchFailure"),
        "no SDK debug dump: {stderr}"
    );
    let keys: Vec<_> = std::fs::read_dir(aws.env.home().join(".km/keys"))
        .unwrap()
        .collect();
    assert!(keys.is_empty(), "no key was left behind");
    let stderr = aws.fails(&["list"]);
    assert!(stderr.contains("cannot reach AWS"), "{stderr}");
}
