"""One boto3 client for the backup integrations (S3 storage, RDS snapshots): built in a thread when first needed,
from the region, an optional endpoint URL named by an environment variable, and the standard AWS key variables;
every call runs in a thread, and a failure becomes a BackupError naming the operation and the service's error code
(never credentials)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from integrations.backups.base import BackupError

if TYPE_CHECKING:
    import botocore.config

_KEY_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class AwsClient:
    """A lazily built boto3 client for `service`; `subject` says what a failing call was about."""

    def __init__(
        self,
        service: str,
        *,
        region: str | None,
        endpoint_url_env: str | None,
        environ: Mapping[str, str],
        subject: str,
        config: botocore.config.Config,
    ) -> None:
        self.service = service
        self._region = region
        self._endpoint_url_env = endpoint_url_env
        self._environ = environ
        self._subject = subject
        self._config = config
        self._client: Any = None

    @property
    def endpoint(self) -> str | None:
        """The endpoint URL from the environment (None: AWS itself); BackupError when the variable is unset."""
        if not self._endpoint_url_env:
            return None
        endpoint = self._environ.get(self._endpoint_url_env) or None
        if endpoint is None:
            raise BackupError(
                f"environment variable {self._endpoint_url_env} (the {self.service.upper()} endpoint URL) is not set"
            )
        return endpoint

    def _make(self) -> Any:
        import boto3

        keys = {name.lower(): self._environ[name] for name in _KEY_VARIABLES if self._environ.get(name)}
        session = boto3.session.Session(**keys, region_name=self._region)
        return session.client(self.service, endpoint_url=self.endpoint, config=self._config)

    async def call(self, operation: str, **params: Any) -> Any:
        """One API call in a thread."""
        import botocore.exceptions

        if self._client is None:
            self._client = await asyncio.to_thread(self._make)
        try:
            return await asyncio.to_thread(getattr(self._client, operation), **params)
        except botocore.exceptions.ClientError as error:
            code = error.response.get("Error", {}).get("Code", "error")
            raise BackupError(f"{self.service.upper()} {operation} {self._subject} failed: {code}") from None
        except botocore.exceptions.BotoCoreError as error:
            raise BackupError(
                f"{self.service.upper()} {operation} {self._subject} failed: {type(error).__name__}"
            ) from None

    async def aclose(self) -> None:
        """Closes the client's connections."""
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
            self._client = None
