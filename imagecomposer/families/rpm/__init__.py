"""The RPM family: rpm-md repositories (Fedora, Enterprise Linux 9 rebuilds, Azure Linux).

``RpmProvider`` implements :class:`imagecomposer.families.base.Provider`; the RPM job
building and solving lives in :mod:`imagecomposer.families.rpm.jobs`, the installation into
a root in :mod:`imagecomposer.families.rpm.install`, the rest of what differs from Debian
in :class:`imagecomposer.families.rpm.family.RpmFamily`.
"""

from imagecomposer.families.rpm.profile import RpmProfile, load_rpm_profile, rpm_profiles
from imagecomposer.families.rpm.provider import RpmProvider

__all__ = ["RpmProfile", "RpmProvider", "load_rpm_profile", "rpm_profiles"]
