"""The Debian-family provider: apt repositories (InRelease/Release, Packages) and .deb files."""

from imagecomposer.providers.deb.provider import DebProvider

__all__ = ["DebProvider"]
