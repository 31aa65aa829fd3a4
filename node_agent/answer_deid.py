"""De-identified answers to federated queries, and the links that let a retrieve come back.

An `[answering]` rule with `mode = "de-identified"` answers as the site's de-identified share
to the asking organization would send the studies: each match's identifying attributes are put
in a small dataset and run through the same engine, profile, recipe and pseudonym key as the
sharing rule's bundles (`deidentify.engine.apply`, `deid_step.share_profile`), so the study UID
the asking clinician sees is the Study Instance UID the instances will carry when the study is
retrieved, and patient attributes and dates are what the recipe makes of them. An answer that
would still carry the patient's name, ID, birth date or accession number is left out.

The way back: `AnswerLinks` keeps, in the agent's state database, pseudonymous study UID ->
this site's study, per asking organization, renewed at every answer and dropped after
`LINK_DAYS`. A retrieve names the pseudonym; a pseudonym this site did not give that
organization (or gave too long ago) is refused. The hub sees none of this: it routes the
sealed request and answer as for identified ones.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import structlog
from pydicom.dataset import Dataset

from deidentify.engine import PseudonymKeys, apply
from deidentify.identity import StudyIdentity
from deidentify.profile import Profile
from deidentify.recipe import Recipe, RecipeError, parse_recipe
from node_agent.deid_step import load_keys, share_profile
from node_agent.dicom.scu import text_value
from node_agent.state import AgentState
from wire.policy import PolicyRule, SitePolicy
from wire.query import StudyMatch

log = structlog.get_logger("hexchange.agent.answer_deid")

LINK_DAYS = 90
_DAY_S = 86400.0


class AnswerDeidError(Exception):
    """A de-identified answer cannot be made here (configuration); the message says what to fix
    and names no patient."""


class AnswerLinks:
    """pseudonymous study UID -> this site's study, per asking organization (durable)."""

    def __init__(self, state: AgentState, days: int = LINK_DAYS) -> None:
        self.state = state
        self.max_age_s = days * _DAY_S

    def remember(self, org: str, links: list[tuple[str, str]], now: float | None = None) -> None:
        """(pseudonym, study UID) pairs answered to `org`; older links are dropped."""
        now = time.time() if now is None else now
        with self.state.transaction() as conn:
            conn.executemany(
                "INSERT INTO answer_links (requester_org, pseudonym_uid, study_uid, linked_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(requester_org, pseudonym_uid) DO UPDATE SET "
                "study_uid = excluded.study_uid, linked_at = excluded.linked_at",
                [(org, pseudonym, study, now) for pseudonym, study in links],
            )
            self._drop_expired(conn, now)

    def original_of(self, org: str, pseudonym: str, now: float | None = None) -> str | None:
        """The study behind a pseudonym this site gave `org`, or None (unknown or expired)."""
        now = time.time() if now is None else now
        with self.state.connect() as conn:
            row = conn.execute(
                "SELECT study_uid FROM answer_links WHERE requester_org = ? AND "
                "pseudonym_uid = ? AND linked_at >= ?",
                (org, pseudonym, now - self.max_age_s),
            ).fetchone()
        return None if row is None else str(row[0])

    def prune(self, now: float | None = None) -> int:
        """Drop the expired links (at start; `remember` drops them as it goes): an agent that
        stops answering an organization keeps no link past its age."""
        now = time.time() if now is None else now
        with self.state.transaction() as conn:
            return self._drop_expired(conn, now)

    def _drop_expired(self, conn: sqlite3.Connection, now: float) -> int:
        cursor = conn.execute(
            "DELETE FROM answer_links WHERE linked_at < ?", (now - self.max_age_s,)
        )
        return cursor.rowcount


def sharing_rule_for(
    sharing: SitePolicy | None, org: str, modalities: set[str]
) -> PolicyRule | None:
    """The sharing policy's first de-identified rule to `org` that a study of these modalities
    may match: the rule whose recipe its bundles would be made with."""
    if sharing is None:
        return None
    return next(
        (
            r
            for r in sharing.rules
            if r.destination_org == org and r.mode == "deidentified" and r.match.matches(modalities)
        ),
        None,
    )


# The attributes of a match that the engine treats (E.1-1 or the recipe decides each).
_TREATED = (
    ("patient_name", "PatientName"),
    ("patient_id", "PatientID"),
    ("issuer_of_patient_id", "IssuerOfPatientID"),
    ("patient_birth_date", "PatientBirthDate"),
    ("patient_sex", "PatientSex"),
    ("study_uid", "StudyInstanceUID"),
    ("study_date", "StudyDate"),
    ("study_time", "StudyTime"),
    ("study_description", "StudyDescription"),
    ("accession_number", "AccessionNumber"),
)
_LIMITS = {"patient_birth_date": 8, "study_date": 8, "study_time": 16, "accession_number": 16,
           "patient_sex": 16}  # fmt: skip


# the text an answer shows about the patient and study (UIDs, dates and counts are numbers a
# short numeric patient ID would be found in by chance)
_SHOWN_TEXT = (
    "patient_name", "patient_id", "issuer_of_patient_id", "patient_birth_date",
    "study_description", "accession_number", "institution_name",
)  # fmt: skip


def _identity_words(match: StudyMatch) -> set[str]:
    """The values an answer must not carry, upper-case: name (and its components of 3 or more
    characters), ID, birth date, accession number."""
    values = (match.patient_name, match.patient_id, match.patient_birth_date,
              match.accession_number)  # fmt: skip
    words = {v.strip().upper() for v in values if v and v.strip()}
    for part in (match.patient_name or "").replace("^", " ").replace("=", " ").split():
        if len(part) >= 3:
            words.add(part.upper())
    return words


def still_identifies(original: StudyMatch, shown: StudyMatch) -> bool:
    """Does the de-identified match still show the patient's name, ID, birth date or
    accession number in its text? (A recipe that keeps them: the study is left out.)"""
    text = " ".join(str(getattr(shown, f) or "").upper() for f in _SHOWN_TEXT)
    return any(word in text for word in _identity_words(original))


class AnswerDeidentifier:
    """Makes a rule's de-identified answer: `pseudonymize` the matches, remember the links."""

    def __init__(self, state: AgentState, key_file: Path | None, site_options: list[str]) -> None:
        self.links = AnswerLinks(state)
        self.links.prune()
        self._key_file = key_file
        self._site_options = site_options
        self._keys: PseudonymKeys | None = None
        self._recipes: dict[str, Recipe] = {}

    def keys(self) -> PseudonymKeys:
        if self._keys is None:
            try:
                self._keys = load_keys(self._key_file)
            except ValueError as exc:
                raise AnswerDeidError(str(exc)) from exc
        return self._keys

    def _recipe(self, text: str | None) -> Recipe | None:
        if text is None:
            return None
        if text not in self._recipes:
            try:
                self._recipes[text] = parse_recipe(text)
            except RecipeError as exc:
                raise AnswerDeidError(f"the sharing rule's recipe does not parse: {exc}") from exc
        return self._recipes[text]

    def profile(self, rule: PolicyRule) -> Profile:
        try:
            return share_profile(Profile.from_names(self._site_options), rule.deid_options)
        except ValueError as exc:
            raise AnswerDeidError(f"unknown de-identification option: {exc}") from exc

    def pseudonymize(self, match: StudyMatch, rule: PolicyRule) -> StudyMatch | None:
        """The match as the share under `rule` would show the study, or None if it would
        still identify the patient."""
        ds = Dataset()
        for field, keyword in _TREATED:
            value = getattr(match, field)
            if value:
                setattr(ds, keyword, value)
        out = apply(
            ds, self.profile(rule), self.keys(), self._recipe(rule.recipe),
            identity=StudyIdentity.collect([ds]),
        ).dataset  # fmt: skip
        values: dict[str, str | None] = {}
        for field, keyword in _TREATED:
            text = text_value(out, keyword)
            limit = _LIMITS.get(field, 64)
            values[field] = text[:limit] if text else None
        study_uid = values.pop("study_uid")
        if not study_uid:
            return None
        try:
            deidentified = StudyMatch.model_validate(
                {**match.model_dump(), **values, "study_uid": study_uid}
            )
        except ValueError:
            return None
        if still_identifies(match, deidentified):
            log.warning("de-identified answer still held identity; study left out")
            return None
        return deidentified

    def answer(
        self,
        matches: list[StudyMatch],
        sharing: SitePolicy | None,
        requester_org: str,
    ) -> list[StudyMatch]:
        """The de-identified matches (those a de-identified share to the org could send),
        their links remembered before they are answered."""
        out: list[StudyMatch] = []
        links: list[tuple[str, str]] = []
        for match in matches:
            rule = sharing_rule_for(sharing, requester_org, set(match.modalities))
            if rule is None:
                continue
            shown = self.pseudonymize(match, rule)
            if shown is None:
                continue
            out.append(shown)
            links.append((shown.study_uid, match.study_uid))
        if links:
            self.links.remember(requester_org, links)
        return out
