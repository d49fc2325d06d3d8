"""Policy documents as typed data (`aws_iam_policy_document`), never JSON strings built by hand."""

from __future__ import annotations

from collections.abc import Sequence

from constructs import Construct

from lib.cdk.aws.data_aws_iam_policy_document import (
    DataAwsIamPolicyDocument,
    DataAwsIamPolicyDocumentStatement,
    DataAwsIamPolicyDocumentStatementCondition,
    DataAwsIamPolicyDocumentStatementPrincipals,
)


def allow(actions: Sequence[str], resources: Sequence[str], *, sid: str | None = None,
          principals: dict[str, Sequence[str]] | None = None,
          conditions: Sequence[tuple[str, str, Sequence[str]]] = (),
          effect: str = "Allow") -> DataAwsIamPolicyDocumentStatement:
    """One statement. `principals` maps a principal type to identifiers ({"Service": [...]});
    `conditions` are (test, variable, values) triples."""
    return DataAwsIamPolicyDocumentStatement(
        sid=sid,
        effect=effect,
        actions=list(actions),
        resources=list(resources) or None,
        principals=[DataAwsIamPolicyDocumentStatementPrincipals(type=kind, identifiers=list(ids))
                    for kind, ids in (principals or {}).items()] or None,
        condition=[DataAwsIamPolicyDocumentStatementCondition(test=test, variable=variable, values=list(values))
                   for test, variable, values in conditions] or None,
    )


def deny(actions: Sequence[str], resources: Sequence[str], **kwargs) -> DataAwsIamPolicyDocumentStatement:
    return allow(actions, resources, effect="Deny", **kwargs)


def policy_document(scope: Construct, id_: str,
                    statements: Sequence[DataAwsIamPolicyDocumentStatement]) -> DataAwsIamPolicyDocument:
    return DataAwsIamPolicyDocument(scope, id_, statement=list(statements))


def assume_role_policy(scope: Construct, id_: str, service: str, *, account_id: str | None = None,
                       source_arn: str | None = None) -> DataAwsIamPolicyDocument:
    """Trust for one AWS service principal, pinned to this account (confused-deputy guard)."""
    conditions = []
    if account_id is not None:
        conditions.append(("StringEquals", "aws:SourceAccount", [account_id]))
    if source_arn is not None:
        conditions.append(("ArnLike", "aws:SourceArn", [source_arn]))
    return policy_document(scope, id_, [
        allow(["sts:AssumeRole"], [], principals={"Service": [service]}, conditions=conditions)
    ])
