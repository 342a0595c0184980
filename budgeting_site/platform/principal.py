from dataclasses import dataclass, field


@dataclass(frozen=True)
class Principal:
    """Who is calling: `sub` for a JWT, `key:<id>` for an API key, `user:<name>` on the pages."""

    principal: str
    tenant_id: str
    roles: frozenset[str] = field(default_factory=frozenset)
    credential_id: str = ""
    kind: str = "jwt"

    is_authenticated = True
    is_anonymous = False

    def has_any(self, roles: frozenset[str] | set[str]) -> bool:
        return bool(self.roles & roles)

    @property
    def actor(self) -> dict[str, str]:
        from budgeting_site.platform.instance import INSTANCE_ID

        return {
            "principal": self.principal,
            "credential_id": self.credential_id,
            "instance": INSTANCE_ID,
        }
