"""What a customer sends to sign up, sign in, refresh and sign out, and the tokens they get back."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from vigil.schemas import Country, Latitude, Longitude, Text


def _utf8(text: str) -> str:
    # json.loads lets a lone surrogate ("\ud800") through; it has no UTF-8 form to hash or store.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    return text


def normalise_email(address: str) -> str:
    """How addresses are compared and stored: trimmed and lower-cased."""
    return address.strip().lower()


def _email(address: str) -> str:
    return normalise_email(_utf8(address))


#: An e-mail address, stored lower-cased. Checked for shape only: whether it reaches someone is
#: for a confirmation e-mail to find out, and Vigil sends none yet.
Email = Annotated[
    str,
    Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
    AfterValidator(_email),
]
CleanText = Annotated[Text, AfterValidator(_utf8)]
#: Long enough to be worth hashing, short enough that hashing it costs what any other does.
NewPassword = Annotated[str, Field(min_length=10, max_length=128), AfterValidator(_utf8)]
Password = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_utf8)]
Fingerprint = Annotated[CleanText, Field(min_length=8, max_length=128)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SignUp(_In):
    """A new customer, signed in on the device they sign up with (it becomes their first
    registered device). ``home_lat``/``home_lon``: where they live, for the distance features."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "password": "correct horse battery",
                    "full_name": "Ada Lovelace",
                    "country": "GB",
                    "home_lat": 51.5,
                    "home_lon": -0.12,
                    "device_fingerprint": "a3f9c2e1d4b5a6f7",
                    "device_name": "Ada's phone",
                    "device_os": "android",
                }
            ]
        }
    )

    email: Email
    password: NewPassword
    full_name: CleanText = Field(min_length=1, max_length=200)
    country: Country
    home_lat: Latitude
    home_lon: Longitude
    birth_date: date | None = None
    device_fingerprint: Fingerprint
    device_name: CleanText = Field(min_length=1, max_length=64)
    device_os: CleanText = Field(default="unknown", min_length=1, max_length=32)


class SignIn(_In):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "password": "correct horse battery",
                    "device_fingerprint": "a3f9c2e1d4b5a6f7",
                    "device_name": "Ada's phone",
                }
            ]
        }
    )

    email: Email
    password: Password
    device_fingerprint: Fingerprint
    device_name: CleanText = Field(default="unnamed device", min_length=1, max_length=64)
    device_os: CleanText = Field(default="unknown", min_length=1, max_length=32)


class RefreshRequest(_In):
    refresh_token: str = Field(min_length=1, max_length=256)


class SignOut(_In):
    all_devices: bool = Field(
        default=False, description="end every session of this customer, not just this one"
    )


class TokenPair(BaseModel):
    """A signed-in session's tokens. Send ``access_token`` as ``Authorization: Bearer``; before
    ``expires_at``, trade ``refresh_token`` for a new pair (each refresh token works once)."""

    token_type: str = "bearer"
    access_token: str
    expires_in: int = Field(description="seconds the access token is valid for")
    expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime
    user_id: int
    device_id: int
    new_device: bool = Field(description="this sign-in registered a device the customer had not used")
