"""``${var}`` substitution."""

from __future__ import annotations

import pytest

from imagecomposer.foundation.errors import ValidationError
from imagecomposer.spec import Spec

BASE = "image:\n  name: web\n  base: {os: debian, version: '12'}\n"


def test_variables_substitute_in_every_string() -> None:
    spec = Spec.from_text(BASE + """\
variables: {domain: example.org, host: web01}
repositories:
  - {name: internal, url: "https://repo.${domain}/debian", suite: bookworm}
customizations:
  hostname: ${host}.${domain}
  files: [{content: "served by ${host}\\n", destination: /etc/motd}]
""")
    assert spec.repositories[0].url == "https://repo.example.org/debian"
    assert spec.customizations.hostname == "web01.example.org"
    assert spec.customizations.files[0].content == "served by web01\n"
    assert dict(spec.variables) == {"domain": "example.org", "host": "web01"}


def test_overrides_win_and_may_define_new_variables() -> None:
    text = BASE + "variables: {domain: example.org}\ncustomizations: {hostname: '${h}.${domain}'}\n"
    spec = Spec.from_text(text, variables={"domain": "example.net", "h": "db"})
    assert spec.customizations.hostname == "db.example.net"
    assert dict(spec.variables) == {"domain": "example.net", "h": "db"}


def test_variables_may_use_variables() -> None:
    spec = Spec.from_text(BASE + "variables: {domain: example.org, fqdn: 'web.${domain}'}\n"
                          "customizations: {hostname: '${fqdn}'}\n")
    assert spec.customizations.hostname == "web.example.org"


def test_double_dollar_escapes_and_lone_dollars_stay() -> None:
    spec = Spec.from_text(BASE + "customizations:\n  files:\n"
                          "    - {content: 'echo $${HOME} $PATH $6$x', destination: /etc/x}\n")
    assert spec.customizations.files[0].content == "echo ${HOME} $PATH $6$x"


def test_numbers_as_variable_values_keep_their_text() -> None:
    spec = Spec.from_text("variables: {release: 22.10}\nimage: {name: 'r${release}', "
                          "base: {os: debian, version: '12'}}\n")
    assert spec.image.name == "r22.10"


def test_undefined_variable_points_at_the_use() -> None:
    with pytest.raises(ValidationError) as caught:
        Spec.from_text(BASE + "customizations:\n  hostname: 'web.${nope}'\n", name="web.yml")
    assert [str(p) for p in caught.value.problems] == [
        "web.yml:5:18: customizations.hostname: undefined variable 'nope'"]


def test_variable_cycle() -> None:
    with pytest.raises(ValidationError, match="variable cycle: a -> b -> a"):
        Spec.from_text(BASE + "variables: {a: '${b}', b: '${a}'}\n")


def test_unterminated_reference() -> None:
    with pytest.raises(ValidationError, match="unterminated"):
        Spec.from_text(BASE + "customizations: {hostname: 'web${x'}\n")
