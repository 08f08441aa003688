"""Asking and stopping questions, feedback on answers, deleting conversations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from appliance.audit import actions as audit
from appliance.audit.models import Action
from inference import events, tasks
from inference.conversation import MAX_TURNS
from inference.models import Conversation, Feedback, Question, QuestionStatus
from ingest.models import Collection, Document

MAX_QUESTION_CHARS = 4000
MAX_HISTORY_ANSWER_CHARS = 8000


class InvalidQuestion(ValueError):
    pass


def ask(
    user: Any,
    text: str,
    collection_ids: Sequence[Any] | None = None,
    conversation_id: Any = None,
    document_id: Any = None,
    *,
    history: Sequence[tuple[str, str]] = (),
    via: dict[str, Any] | None = None,
) -> Question:
    """Record the question and queue it. ``collection_ids`` can only narrow the asker's
    scope: ids they may not read are dropped (and, if nothing is left, refused the same way
    as ids that do not exist). ``conversation_id`` continues one of the asker's own
    conversations; without it a new conversation starts. ``document_id`` asks about one
    document as a whole (``inference.documents``): one the asker may not read is refused in
    the same words as one that does not exist. A follow-up that names no collections keeps
    the scope its conversation was narrowed to. ``history`` is the conversation so far as
    the asker's client sent it, (question, answer) pairs, oldest first (a new conversation
    then starts; see ``conversation.given_history``); ``via`` says which door the question
    came through (``{"via": "openai", "token_id": ...}``), for the audit row."""
    text = (text or "").strip()
    if not text:
        raise InvalidQuestion(_("Please type a question."))
    if len(text) > MAX_QUESTION_CHARS:
        raise InvalidQuestion(
            _("Questions are limited to %(most)d characters.") % {"most": MAX_QUESTION_CHARS}
        )
    scope: list[int] = []
    if collection_ids:
        try:
            wanted = {int(i) for i in collection_ids}
        except (TypeError, ValueError):
            raise InvalidQuestion("collection_ids must be a list of collection ids.") from None
        scope = sorted(
            Collection.objects.visible_to(user).filter(pk__in=wanted).values_list("pk", flat=True)
        )
        if not scope:
            raise InvalidQuestion(_("None of the chosen collections exist or are open to you."))
    documents = [_document_to_ask_about(user, document_id, scope)] if document_id else []
    given = [
        {"question": str(q)[:MAX_QUESTION_CHARS], "answer": str(a)[:MAX_HISTORY_ANSWER_CHARS]}
        for q, a in list(history)[-MAX_TURNS:]
    ]
    if given and conversation_id not in (None, ""):
        raise InvalidQuestion("Send either a conversation id or the earlier turns, not both.")
    conversation = None
    if conversation_id not in (None, ""):
        try:
            conversation = (
                Conversation.objects.visible_to(user).filter(pk=int(conversation_id)).first()
            )
        except (TypeError, ValueError):
            conversation = None
        if conversation is None:
            raise InvalidQuestion(_("That conversation does not exist or is not yours."))
        if not collection_ids:
            scope = _conversation_scope(user, conversation)
    with transaction.atomic():
        if conversation is None:
            conversation = Conversation.objects.create(user=user, title=text[:200])
        else:
            conversation.save(update_fields=["updated_at"])
        question = Question.objects.create(
            user=user,
            text=text,
            scope=scope,
            conversation=conversation,
            documents=documents,
            history=given,
        )
        details = {"text": text, "scope": scope or "all", "conversation_id": conversation.pk}
        if documents:
            details["documents"] = documents
        if given:
            details["history_turns"] = len(given)
        details.update(via or {})
        audit.record(Action.QUESTION, actor=user, obj=question, details=details)
        transaction.on_commit(lambda: tasks.enqueue(question))
    return question


def _conversation_scope(user: Any, conversation: Conversation) -> list[int]:
    """The scope of the conversation's latest question, as far as it is still readable
    (an emptied scope would mean "everything", so it falls back to that only when the
    conversation was never narrowed)."""
    last = conversation.questions.order_by("-created_at", "-id").values_list("scope", flat=True)
    narrowed = last.first() or []
    if not narrowed:
        return []
    readable = Collection.objects.visible_to(user).filter(pk__in=narrowed)
    return sorted(readable.values_list("pk", flat=True)) or [0]


def _document_to_ask_about(user: Any, document_id: Any, scope: list[int]) -> int:
    try:
        wanted = int(document_id)
    except (TypeError, ValueError):
        raise InvalidQuestion("document_id must be a document id.") from None
    found = Document.objects.visible_to(user).filter(pk=wanted).first()
    if found is None:
        raise InvalidQuestion(_("That document does not exist or is not open to you."))
    if scope and found.collection_id not in scope:
        raise InvalidQuestion(
            _(
                "That document is not in the collections you chose. "
                "Choose its collection too, or none."
            )
        )
    if not found.live_version:
        raise InvalidQuestion(_("That document is still being read. Ask again once it is ready."))
    return found.pk


def cancel(user: Any, question: Question) -> None:
    """Stop generation within a token; a queued question is never started."""
    if question.is_final:
        return
    events.request_cancel(question)
    Question.objects.filter(pk=question.pk).update(cancel_requested=True)


MAX_COMMENT_CHARS = 2000


class InvalidFeedback(ValueError):
    pass


def give_feedback(
    user: Any, question: Question, helpful: Any, comment: str = "", share_question: Any = False
) -> Feedback:
    """Record (or change) ``user``'s thumbs up or down on ``question``'s answer. One row per
    person and answer; giving it again changes it. The audit row keeps the rating and
    whether the question was shared, not the comment's words (they may quote the question,
    which stays with its asker unless shared)."""
    if not isinstance(helpful, bool):
        raise InvalidFeedback(_("Say whether the answer helped: helpful must be true or false."))
    if question.status != QuestionStatus.DONE:
        raise InvalidFeedback(_("Feedback can be given once the answer is complete."))
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidFeedback(
            _("Comments are limited to %(count)d characters.") % {"count": MAX_COMMENT_CHARS}
        )
    with transaction.atomic():
        feedback, created = Feedback.objects.select_for_update().get_or_create(
            question=question,
            user=user,
            defaults={
                "helpful": helpful,
                "comment": comment,
                "share_question": bool(share_question),
            },
        )
        if not created:
            feedback.helpful, feedback.comment = helpful, comment
            feedback.share_question = bool(share_question)
            feedback.save(update_fields=["helpful", "comment", "share_question", "updated_at"])
        audit.record(
            Action.FEEDBACK,
            actor=user,
            obj=feedback,
            details={
                "question_id": question.pk,
                "helpful": helpful,
                "commented": bool(comment),
                "share_question": feedback.share_question,
                "changed": not created,
            },
        )
    return feedback


def delete_conversation(user: Any, conversation: Conversation) -> int:
    """Delete one of ``user``'s conversations with its questions, answers and feedback.
    An answer still being written is stopped first. The audit row says how many questions
    went, never their words. Returns that number."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        questions = list(locked.questions.all())
        for question in questions:
            if not question.is_final:
                transaction.on_commit(lambda q=question: events.request_cancel(q))
        transaction.on_commit(lambda: events.forget(questions))
        count = len(questions)
        audit.record(
            Action.CONVERSATION_DELETE,
            actor=user,
            obj=locked,
            details={"questions": count, "question_ids": [q.pk for q in questions]},
        )
        locked.delete()
    return count
