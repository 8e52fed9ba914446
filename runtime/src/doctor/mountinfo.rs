//! The parser of /proc/self/mountinfo, which several of the host's facts come from.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use serde::Serialize;

/// One line of /proc/self/mountinfo, with the kernel's octal escapes undone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MountEntry {
    /// The directory of the filesystem that appears at `mount_point`.
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    /// The filesystem's own options (a v1 cgroup hierarchy's controllers are among them).
    pub super_options: String,
}

/// Parses /proc/self/mountinfo, skipping lines it cannot read.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            // Optional fields (shared:N, master:N) vary in number; a lone `-` ends them.
            let separator = fields.iter().skip(6).position(|f| *f == "-")? + 6;
            Some(MountEntry {
                root: PathBuf::from(OsStr::from_bytes(&unescape(fields.get(3)?))),
                mount_point: PathBuf::from(OsStr::from_bytes(&unescape(fields.get(4)?))),
                fs_type: String::from_utf8_lossy(&unescape(fields.get(separator + 1)?))
                    .into_owned(),
                source: String::from_utf8_lossy(&unescape(fields.get(separator + 2)?)).into_owned(),
                super_options: String::from_utf8_lossy(&unescape(
                    fields.get(separator + 3).copied().unwrap_or_default(),
                ))
                .into_owned(),
            })
        })
        .collect()
}

/// Undoes the `\ooo` escapes the kernel writes for space, tab, newline and backslash.
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)) && d[0] <= b'3'
        });
        match octal {
            Some(digits) => {
                out.push(digits.iter().fold(0u8, |n, d| n * 8 + (d - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::Path;

    use super::*;

    /// /proc/self/mountinfo of `docker run` with the default security options, with a bind
    /// whose path has a space, a tab and a backslash.
    pub(in crate::doctor) const DOCKER_MOUNTINFO: &str = "\
1015 862 0:84 / / rw,relatime master:405 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC:/var/lib/docker/overlay2/l/DEF,upperdir=/var/lib/docker/overlay2/0f3c/diff,workdir=/var/lib/docker/overlay2/0f3c/work
1016 1015 0:87 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1017 1015 0:88 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755,inode64
1018 1017 0:89 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666
1019 1015 0:90 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
1020 1019 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate,memory_recursiveprot
1021 1017 0:86 / /dev/mqueue rw,nosuid,nodev,noexec,relatime - mqueue mqueue rw
1022 1017 0:91 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k,inode64
1023 1015 259:2 /var/lib/docker/containers/0f3c/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
1024 1015 259:2 /var/lib/docker/containers/0f3c/hostname /etc/hostname rw,relatime - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
1025 1015 259:2 /var/lib/docker/containers/0f3c/hosts /etc/hosts rw,relatime - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
1026 1015 259:2 /home/me/My\\040Project\\011(old)\\134x /work rw,relatime - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
863 1016 0:87 /bus /proc/bus ro,nosuid,nodev,noexec,relatime - proc proc rw
864 1016 0:87 /fs /proc/fs ro,nosuid,nodev,noexec,relatime - proc proc rw
865 1016 0:87 /irq /proc/irq ro,nosuid,nodev,noexec,relatime - proc proc rw
866 1016 0:87 /sys /proc/sys ro,nosuid,nodev,noexec,relatime - proc proc rw
867 1016 0:87 /sysrq-trigger /proc/sysrq-trigger ro,nosuid,nodev,noexec,relatime - proc proc rw
868 1016 0:92 / /proc/acpi ro,relatime - tmpfs tmpfs ro,inode64
869 1016 0:88 /null /proc/kcore rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755,inode64
870 1016 0:88 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755,inode64
871 1016 0:88 /null /proc/timer_list rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755,inode64
872 1016 0:93 / /proc/scsi ro,relatime - tmpfs tmpfs ro,inode64
873 1019 0:94 / /sys/firmware ro,relatime - tmpfs tmpfs ro,inode64
";

    #[test]
    fn mountinfo_of_a_docker_container() {
        let mounts = parse_mountinfo(DOCKER_MOUNTINFO);
        assert_eq!(mounts.len(), 23);
        assert_eq!(mounts[0].mount_point, Path::new("/"));
        assert_eq!(mounts[0].fs_type, "overlay");
        assert_eq!(mounts[1].fs_type, "proc");
        let work = mounts
            .iter()
            .find(|m| m.mount_point == Path::new("/work"))
            .unwrap();
        assert_eq!(work.root, Path::new("/home/me/My Project\t(old)\\x"));
        assert_eq!(work.source, "/dev/nvme0n1p2");
    }

    #[test]
    fn mountinfo_escapes_in_mount_points() {
        let mounts = parse_mountinfo(
            "40 27 0:50 / /mnt/a\\040b\\012c rw - tmpfs none\\040x rw\n\
             41 27 0:51 / /mnt/d\\\\x rw - tmpfs none rw\n\
             not a mountinfo line\n",
        );
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].mount_point, Path::new("/mnt/a b\nc"));
        assert_eq!(mounts[0].source, "none x");
        // A backslash not followed by an octal escape is kept as it is.
        assert_eq!(mounts[1].mount_point, Path::new("/mnt/d\\\\x"));
    }
}
