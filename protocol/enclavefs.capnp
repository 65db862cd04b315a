@0x968955fec13aaa47;
# The enclavefs wire protocol.
#
# Every frame is a fixed 24-byte header (common/frame.h), one Cap'n Proto message of the type
# the header's kind names, and an optional raw payload (file data, xattr values) that is never
# copied into a message builder. Only common/wire.cpp includes the generated code: everything
# else works with the plain structs of common/messages.h.
#
# Node and handle numbers are keys into the host's per-connection tables, drawn from
# counters; the host never puts a pointer on the wire.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("enclavefs::wire");

const protocolVersion :UInt32 = 1;

enum MountKind {
  basic @0;
  block @1;
}

# First frame from the client (kind = hello).
struct Hello {
  version @0 :UInt32;
  kind @1 :MountKind;
  name @2 :Text;          # export (basic) or volume (block) name
  features @3 :UInt64;    # feature bits the client understands
}

# The host's answer to Hello (kind = welcome).
struct Welcome {
  error @0 :Int32;        # 0 = accepted; otherwise an errno, and `message` says why
  message @1 :Text;
  version @2 :UInt32;
  features @3 :UInt64;
  readOnly @4 :Bool;
  maxWrite @5 :UInt32;    # largest write payload the host accepts
  maxRead @6 :UInt32;     # largest read the host answers
  root @7 :Attr;          # attributes of the export's root (basic)
  volumeSize @8 :UInt64;  # bytes of sectors the volume has (block)
  sectorSize @9 :UInt32;  # every block request is aligned to this (block)
}

struct Timespec {
  sec @0 :Int64;
  nsec @1 :UInt32;
}

struct Attr {
  ino @0 :UInt64;
  mode @1 :UInt32;
  nlink @2 :UInt32;
  uid @3 :UInt32;
  gid @4 :UInt32;
  rdev @5 :UInt32;
  size @6 :UInt64;
  blocks @7 :UInt64;
  blksize @8 :UInt32;
  atime @9 :Timespec;
  mtime @10 :Timespec;
  ctime @11 :Timespec;
}

struct Entry {
  node @0 :UInt64;
  generation @1 :UInt64;
  attr @2 :Attr;
}

# Who asked: the enclave caller's ids, for the host's ownership policy.
struct Caller {
  uid @0 :UInt32;
  gid @1 :UInt32;
}

struct ForgetItem {
  node @0 :UInt64;
  count @1 :UInt64;
}

struct SetAttr {
  handle @0 :UInt64;      # 0 = none
  valid @1 :UInt32;       # SetAttrValid bits
  mode @2 :UInt32;
  uid @3 :UInt32;
  gid @4 :UInt32;
  size @5 :UInt64;
  atime @6 :Timespec;
  mtime @7 :Timespec;
}

struct Rename {
  newParent @0 :UInt64;
  newName @1 :Text;
  flags @2 :UInt32;       # RENAME_NOREPLACE / RENAME_EXCHANGE
}

# kind = request. `node` is the inode the operation is on (the parent for name operations);
# `handle` is an open file or directory handle where the operation takes one.
struct Request {
  node @0 :UInt64;
  handle @1 :UInt64;
  name @2 :Text;          # the entry name, for operations on a name in `node`
  caller @3 :Caller;
  union {
    lookup @4 :Void;
    forget @5 :List(ForgetItem);
    getattr @6 :Void;
    setattr @7 :SetAttr;
    readlink @8 :Void;
    mknod @9 :MakeNode;
    mkdir @10 :MakeNode;
    unlink @11 :Void;
    rmdir @12 :Void;
    symlink @13 :Text;     # target
    rename @14 :Rename;
    link @15 :Link;
    open @16 :UInt32;      # flags
    create @17 :MakeNode;
    read @18 :IoRange;
    write @19 :IoRange;    # data in the payload; length = payload size
    flush @20 :Void;
    release @21 :Void;
    fsync @22 :Bool;       # datasync
    fallocate @23 :Fallocate;
    opendir @24 :Void;
    readdir @25 :ReadDir;
    releasedir @26 :Void;
    fsyncdir @27 :Bool;
    statfs @28 :Void;
    setxattr @29 :UInt32;  # flags; value in the payload
    getxattr @30 :UInt32;  # size wanted (0 = ask the size)
    listxattr @31 :UInt32; # size wanted (0 = ask the size)
    removexattr @32 :Void;
    lseek @33 :Lseek;
    getlk @34 :LockRequest;
    setlk @35 :LockRequest;
    flock @36 :UInt32;     # LOCK_SH / LOCK_EX / LOCK_UN, with LOCK_NB to not wait
    # Block volumes: byte ranges of the volume, aligned to the sector size; node and handle
    # are unused.
    sectorRead @38 :SectorRange;
    sectorWrite @39 :SectorWrite;      # data in the payload; length = payload size
    sectorFlush @40 :Void;             # everything written before reaches stable storage
    sectorTrim @41 :SectorRange;       # the host may free the range; it reads back as zeros
    sectorWriteZeroes @42 :SectorRange;
  }
  lockOwner @37 :UInt64;  # flush: the POSIX lock owner whose locks a close drops
  # open: how many of the file's first bytes the client wants in the reply's payload (at
  # most limits::kMaxOpenDataBytes; 0 = none). Fewer come back when the file is shorter.
  openData @43 :UInt32;
  # opendir: a listing the client makes of its own accord; the host leaves the directory's
  # access time alone (O_NOATIME), and fails the open rather than touch it.
  noAtime @44 :Bool;
  # write, setattr with a size, open or create with O_TRUNC, fallocate: the calling enclave
  # process may not keep set-user-ID and set-group-ID bits (it lacks CAP_FSETID), so the host
  # clears them first, as the enclave's kernel would for a local file.
  killSetId @45 :Bool;
}

# A byte-range lock, as fcntl describes it; `end` is inclusive (~0 = to the end of file).
struct Lock {
  start @0 :UInt64;
  end @1 :UInt64;
  type @2 :UInt32;        # F_RDLCK / F_WRLCK / F_UNLCK
  pid @3 :UInt32;
}

struct LockRequest {
  owner @0 :UInt64;       # the kernel's lock owner: a process (POSIX) or an open file (OFD)
  lock @1 :Lock;
  wait @2 :Bool;          # F_SETLKW: the host answers once the lock is granted
}

struct SectorRange {
  offset @0 :UInt64;
  length @1 :UInt64;
}

struct SectorWrite {
  offset @0 :UInt64;
  fua @1 :Bool;           # forced unit access: stable before the reply
}

struct MakeNode {
  mode @0 :UInt32;
  rdev @1 :UInt32;
  flags @2 :UInt32;       # open flags, for create
}

struct Link {
  newParent @0 :UInt64;
  newName @1 :Text;
}

struct IoRange {
  offset @0 :UInt64;
  size @1 :UInt32;
  flags @2 :UInt32;
}

struct Fallocate {
  mode @0 :Int32;
  offset @1 :UInt64;
  length @2 :UInt64;
}

struct ReadDir {
  offset @0 :UInt64;
  size @1 :UInt32;        # bytes of kernel dirent space the reply must fit in
  plus @2 :Bool;
}

struct Lseek {
  offset @0 :UInt64;
  whence @1 :UInt32;
}

struct DirEntry {
  name @0 :Text;
  ino @1 :UInt64;
  type @2 :UInt32;        # DT_* value
  nextOffset @3 :UInt64;
  entry @4 :Entry;        # readdirplus only
}

struct StatFs {
  blocks @0 :UInt64;
  bfree @1 :UInt64;
  bavail @2 :UInt64;
  files @3 :UInt64;
  ffree @4 :UInt64;
  bsize @5 :UInt32;
  frsize @6 :UInt32;
  namemax @7 :UInt32;
}

# kind = reply, with the id of the request it answers.
struct Reply {
  error @0 :Int32;        # 0 or a positive errno; on error the body is `none`
  union {
    none @1 :Void;
    entry @2 :Entry;
    attr @3 :Attr;
    opened @4 :UInt64;    # handle
    created @5 :Created;
    written @6 :UInt32;   # bytes written
    data @7 :Void;        # read, getxattr, listxattr: bytes in the payload
    size @8 :UInt32;      # getxattr / listxattr size probe
    target @9 :Text;      # readlink
    entries @10 :List(DirEntry);
    statfs @11 :StatFs;
    offset @12 :UInt64;   # lseek
    lock @13 :Lock;       # getlk: the conflicting lock, or type F_UNLCK
  }
  # For a request that adds, removes or renames a name (create, mknod, mkdir, symlink, link,
  # unlink, rmdir, rename) or sets attributes (setattr, setxattr, removexattr): the
  # attributes of the directories it names, read after it ran, whether it succeeded or not.
  # At most two.
  dirAttrs @14 :List(NodeAttr);
}

struct NodeAttr {
  node @0 :UInt64;
  attr @1 :Attr;
}

# kind = notify, id 0: the host saw these change (another client, or a host process) and the
# enclave drops what its kernel cached of them.
struct Notify {
  entries @0 :List(EntryChange);  # a name in a directory now means something else
  inodes @1 :List(UInt64);        # a node's attributes or data changed
  # Of the changed nodes that are directories: their attributes, read after the change.
  dirAttrs @2 :List(NodeAttr);
}

struct EntryChange {
  parent @0 :UInt64;
  name @1 :Text;
}

struct Created {
  entry @0 :Entry;
  handle @1 :UInt64;
}
