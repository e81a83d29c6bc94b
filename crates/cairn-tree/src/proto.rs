//! The subset of REAPI v2 messages cairn uses, with the spec's field numbers.
//!
//! Field numbers follow `remote_execution.proto` of
//! bazelbuild/remote-apis (v2); deprecated and unused fields are left out,
//! which is safe for decoding (prost skips them) and for encoding (we never
//! set them). Conversions to and from [`cairn_digest::Digest`] live here.

use cairn_digest::ParseDigestError;

/// `build.bazel.remote.execution.v2.Digest`.
#[derive(Clone, PartialEq, Eq, Hash, ::prost::Message)]
pub struct Digest {
    /// Lowercase hex SHA-256.
    #[prost(string, tag = "1")]
    pub hash: String,
    /// Size in bytes.
    #[prost(int64, tag = "2")]
    pub size_bytes: i64,
}

impl From<cairn_digest::Digest> for Digest {
    fn from(d: cairn_digest::Digest) -> Self {
        Self {
            hash: d.hex(),
            size_bytes: d.size() as i64,
        }
    }
}

impl TryFrom<&Digest> for cairn_digest::Digest {
    type Error = ParseDigestError;

    fn try_from(d: &Digest) -> Result<Self, Self::Error> {
        cairn_digest::Digest::from_reapi(&d.hash, d.size_bytes)
    }
}

/// `Directory`: one level of a tree.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Directory {
    /// Files, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub files: Vec<FileNode>,
    /// Subdirectories, sorted by name.
    #[prost(message, repeated, tag = "2")]
    pub directories: Vec<DirectoryNode>,
    /// Symlinks, sorted by name.
    #[prost(message, repeated, tag = "3")]
    pub symlinks: Vec<SymlinkNode>,
}

/// `FileNode`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct FileNode {
    /// The entry's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Digest of the content.
    #[prost(message, optional, tag = "2")]
    pub digest: Option<Digest>,
    /// The only mode bit a tree records.
    #[prost(bool, tag = "4")]
    pub is_executable: bool,
}

/// `DirectoryNode`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct DirectoryNode {
    /// The entry's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Digest of the encoded child [`Directory`].
    #[prost(message, optional, tag = "2")]
    pub digest: Option<Digest>,
}

/// `SymlinkNode`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SymlinkNode {
    /// The entry's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The link's target, as written.
    #[prost(string, tag = "2")]
    pub target: String,
}

/// `Tree`: a directory and all its descendants in one message (used by
/// `OutputDirectory.tree_digest`).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Tree {
    /// The root directory.
    #[prost(message, optional, tag = "1")]
    pub root: Option<Directory>,
    /// Every directory below the root, each once.
    #[prost(message, repeated, tag = "2")]
    pub children: Vec<Directory>,
}

/// `Command`: what a build step runs.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Command {
    /// argv.
    #[prost(string, repeated, tag = "1")]
    pub arguments: Vec<String>,
    /// The environment, sorted by name.
    #[prost(message, repeated, tag = "2")]
    pub environment_variables: Vec<EnvironmentVariable>,
    /// The platform the command needs.
    #[prost(message, optional, tag = "5")]
    pub platform: Option<Platform>,
    /// Working directory, relative to the input root.
    #[prost(string, tag = "6")]
    pub working_directory: String,
    /// Output paths, relative to the working directory, sorted.
    #[prost(string, repeated, tag = "7")]
    pub output_paths: Vec<String>,
}

/// `Command.EnvironmentVariable`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct EnvironmentVariable {
    /// Variable name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Variable value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `Platform`: properties an executor must match, sorted by name.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Platform {
    /// The properties.
    #[prost(message, repeated, tag = "1")]
    pub properties: Vec<PlatformProperty>,
}

/// `Platform.Property`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PlatformProperty {
    /// Property name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Property value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Duration`.
#[derive(Clone, Copy, PartialEq, Eq, ::prost::Message)]
pub struct Duration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, ::prost::Message)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `Action`: a command applied to an input root; its digest is the cache key.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Action {
    /// Digest of the encoded [`Command`].
    #[prost(message, optional, tag = "1")]
    pub command_digest: Option<Digest>,
    /// Digest of the root [`Directory`] of the inputs.
    #[prost(message, optional, tag = "2")]
    pub input_root_digest: Option<Digest>,
    /// Wall-clock limit.
    #[prost(message, optional, tag = "6")]
    pub timeout: Option<Duration>,
    /// Never cache the result.
    #[prost(bool, tag = "7")]
    pub do_not_cache: bool,
    /// Salt, to partition the cache.
    #[prost(bytes = "vec", tag = "9")]
    pub salt: Vec<u8>,
    /// The platform the action needs.
    #[prost(message, optional, tag = "10")]
    pub platform: Option<Platform>,
}

/// `ActionResult`: what the action cache maps an action digest to.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ActionResult {
    /// Output files.
    #[prost(message, repeated, tag = "2")]
    pub output_files: Vec<OutputFile>,
    /// Output directories.
    #[prost(message, repeated, tag = "3")]
    pub output_directories: Vec<OutputDirectory>,
    /// The command's exit code.
    #[prost(int32, tag = "4")]
    pub exit_code: i32,
    /// Digest of the captured stdout.
    #[prost(message, optional, tag = "6")]
    pub stdout_digest: Option<Digest>,
    /// Digest of the captured stderr.
    #[prost(message, optional, tag = "8")]
    pub stderr_digest: Option<Digest>,
    /// Timings.
    #[prost(message, optional, tag = "9")]
    pub execution_metadata: Option<ExecutedActionMetadata>,
}

/// `OutputFile`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct OutputFile {
    /// Path relative to the working directory.
    #[prost(string, tag = "1")]
    pub path: String,
    /// Content digest.
    #[prost(message, optional, tag = "2")]
    pub digest: Option<Digest>,
    /// Executable bit.
    #[prost(bool, tag = "4")]
    pub is_executable: bool,
}

/// `OutputDirectory`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct OutputDirectory {
    /// Path relative to the working directory.
    #[prost(string, tag = "1")]
    pub path: String,
    /// Digest of an encoded [`Tree`].
    #[prost(message, optional, tag = "3")]
    pub tree_digest: Option<Digest>,
    /// Digest of the root [`Directory`] (REAPI 2.1+ `root_directory_digest`).
    #[prost(message, optional, tag = "5")]
    pub root_directory_digest: Option<Digest>,
}

/// `ExecutedActionMetadata` (the timestamps cairn records).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ExecutedActionMetadata {
    /// Who ran it.
    #[prost(string, tag = "1")]
    pub worker: String,
    /// When the worker started.
    #[prost(message, optional, tag = "3")]
    pub worker_start_timestamp: Option<Timestamp>,
    /// When the worker finished.
    #[prost(message, optional, tag = "4")]
    pub worker_completed_timestamp: Option<Timestamp>,
    /// When execution started.
    #[prost(message, optional, tag = "7")]
    pub execution_start_timestamp: Option<Timestamp>,
    /// When execution finished.
    #[prost(message, optional, tag = "8")]
    pub execution_completed_timestamp: Option<Timestamp>,
}
