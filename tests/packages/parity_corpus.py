"""The apt parity corpus: requests of the kinds users make, on top of the minimal base.

Each is resolved with imagecomposer and simulated with ``apt-get -s install`` on the same
verified index files, for Debian 12 and 13, with and without Recommends
(``tests/packages/test_parity.py``, ``benchmarks/bench_parity.py``). None of them was used
to tune the apt model: it follows apt's source, not these results.
"""

from __future__ import annotations

CORPUS: dict[str, tuple[str, ...]] = {
    # what the older parity tests checked: the bootable base + ssh, and a mixed server
    "base-ssh": ("openssh-server",),
    "mixed-server": ("openssh-server", "postfix", "apache2", "python3-pip",
                     "build-essential", "vim", "mariadb-server"),
    # desktops
    "xfce4": ("xfce4",),
    "kde-standard": ("kde-standard",),
    "gnome-core": ("gnome-core",),
    "lxqt": ("lxqt",),
    "task-xfce-desktop": ("task-xfce-desktop",),
    "task-gnome-desktop": ("task-gnome-desktop",),
    # servers
    "lamp": ("apache2", "mariadb-server", "php", "libapache2-mod-php", "php-mysql"),
    "lemp": ("nginx", "mariadb-server", "php-fpm", "php-mysql"),
    "postgresql": ("postgresql",),
    "mail-postfix-dovecot": ("postfix", "dovecot-imapd", "dovecot-pop3d"),
    "mail-exim": ("exim4-daemon-heavy", "dovecot-imapd"),
    "samba": ("samba",),
    "bind9": ("bind9",),
    "docker": ("docker.io",),
    "podman": ("podman",),
    "web-and-mailx": ("apache2", "bsd-mailx"),
    "task-servers": ("task-ssh-server", "task-web-server"),
    # developer sets
    "build-essential": ("build-essential",),
    "golang": ("golang",),
    "rust": ("rustc", "cargo"),
    "openjdk": ("default-jdk",),
    "maven": ("maven",),
    "nodejs": ("nodejs", "npm"),
    "texlive": ("texlive-latex-base",),
    "r-base": ("r-base",),
    "scipy": ("python3-scipy",),
}
