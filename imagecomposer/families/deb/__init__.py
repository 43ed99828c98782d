"""The Debian-family provider: apt repositories (InRelease/Release, Packages) and .deb files."""

from imagecomposer.families.deb.provider import DebProvider

__all__ = ["DebProvider"]
