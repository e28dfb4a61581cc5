"""deploy/aws/eventbridge.yaml: cfn-lint clean, and it wires what issue 16 asks for."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.test_ingest_deploy import ROOT, _lint

TEMPLATE = ROOT / "deploy" / "aws" / "eventbridge.yaml"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !GetAtt ...) kept as plain values."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


_CfnLoader.add_multi_constructor("!", _tag)


def _resources() -> dict[str, dict[str, object]]:
    document = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader
    return dict(document["Resources"])


def test_eventbridge_template_passes_cfn_lint() -> None:
    result = _lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_would_catch_a_broken_eventbridge_template(tmp_path: Path) -> None:
    broken = tmp_path / "eventbridge.yaml"
    broken.write_text(
        TEMPLATE.read_text().replace("VisibilityTimeout: 180", "VisibilityTimeout: x")
    )
    assert _lint(broken).returncode != 0


def test_the_path_is_wired_with_least_privilege() -> None:
    resources = _resources()
    kinds = {name: str(resource["Type"]) for name, resource in resources.items()}
    assert kinds["StripeEventBus"] == "AWS::Events::EventBus"
    rule = resources["StripeEventsRule"]["Properties"]
    assert rule["EventPattern"] == {"source": [{"prefix": "aws.partner/stripe.com"}]}  # type: ignore[index]
    queue = resources["EventsQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"GetAtt": "EventsDeadLetterQueue.Arn"}  # type: ignore[index]
    policy = resources["EventsQueuePolicy"]["Properties"]["PolicyDocument"]  # type: ignore[index]
    [statement] = policy["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"GetAtt": "StripeEventsRule.Arn"}}
    }
    for name in ("ConsumerRole", "ConsumeSqsPolicy"):
        text = yaml.safe_dump(resources[name])
        assert "sqs:*" not in text and "sqs:SendMessage" not in text and "'*'" not in text
    function = resources["EventBridgeConsumerFunction"]["Properties"]
    assert function["Handler"] == "ingest.lambda_handler.handler"  # type: ignore[index]
    assert function["Events"]["StripeQueue"]["Properties"]["FunctionResponseTypes"] == [  # type: ignore[index]
        "ReportBatchItemFailures"
    ]
    alarms = {
        resource["Properties"]["MetricName"]  # type: ignore[index]
        for resource in resources.values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"} <= alarms
