"""load-balancer: the internet-facing HTTPS entry of the AWS side, in front of the API Lambda."""

from __future__ import annotations

from constructs import Construct

from lib.cdk.aws.acm_certificate import AcmCertificate
from lib.cdk.aws.acm_certificate_validation import AcmCertificateValidation
from lib.cdk.aws.data_aws_elb_service_account import DataAwsElbServiceAccount
from lib.cdk.aws.lambda_permission import LambdaPermission
from lib.cdk.aws.lb import Lb, LbAccessLogs
from lib.cdk.aws.lb_listener import (
    LbListener,
    LbListenerDefaultAction,
    LbListenerDefaultActionRedirect,
)
from lib.cdk.aws.lb_target_group import LbTargetGroup, LbTargetGroupHealthCheck
from lib.cdk.aws.lb_target_group_attachment import LbTargetGroupAttachment
from lib.cdk.aws.route53_record import Route53Record
from lib.cdk.aws.s3_bucket import S3Bucket
from lib.cdk.aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
    S3BucketLifecycleConfigurationRuleExpiration,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
)
from lib.cdk.aws.s3_bucket_ownership_controls import (
    S3BucketOwnershipControls,
    S3BucketOwnershipControlsRule,
)
from lib.cdk.aws.s3_bucket_policy import S3BucketPolicy
from lib.cdk.aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock
from lib.cdk.aws.s3_bucket_server_side_encryption_configuration import (
    S3BucketServerSideEncryptionConfigurationA,
    S3BucketServerSideEncryptionConfigurationRuleA,
    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA,
)
from lib.cdk.aws.s3_bucket_versioning import (
    S3BucketVersioningA,
    S3BucketVersioningVersioningConfiguration,
)
from lib.cdk.aws.wafv2_web_acl_association import Wafv2WebAclAssociation
from lib.config import Config
from lib.constructs.iam import allow, deny, policy_document
from lib.stacks.base import BaseStack
from lib.stacks.compute import ComputeStack
from lib.stacks.network import NetworkStack
from lib.stacks.security import SecurityStack

ACCESS_LOG_PREFIX = "alb"


class LoadBalancerStack(BaseStack):
    def __init__(self, scope: Construct, *, config: Config, network: NetworkStack, security: SecurityStack,
                 compute: ComputeStack) -> None:
        super().__init__(scope, "load-balancer", config=config)
        lb_config = config.load_balancer
        logs_bucket = self._access_log_bucket(config)
        certificate_arn = self._certificate(config, zone_id=network.zone_id)

        self.alb = Lb(
            self, "alb", name=self.resource_name("api"), load_balancer_type="application", internal=False,
            subnets=network.public_subnet_ids, security_groups=[security.alb_security_group_id],
            drop_invalid_header_fields=True, desync_mitigation_mode="strictest",
            enable_deletion_protection=lb_config.deletion_protection, idle_timeout=lb_config.idle_timeout_seconds,
            access_logs=LbAccessLogs(bucket=logs_bucket.bucket, prefix=ACCESS_LOG_PREFIX, enabled=True),
            depends_on=[self._logs_bucket_policy])
        self.target_group = LbTargetGroup(
            self, "api", name=self.resource_name("api"), target_type="lambda",
            health_check=LbTargetGroupHealthCheck(enabled=True, path="/health", matcher="200", interval=30,
                                                  timeout=10, healthy_threshold=2, unhealthy_threshold=2))
        permission = LambdaPermission(
            self, "invoke", statement_id="AllowAlbTargetGroup", action="lambda:InvokeFunction",
            function_name=compute.function_name, principal="elasticloadbalancing.amazonaws.com",
            source_arn=self.target_group.arn)
        LbTargetGroupAttachment(self, "api-target", target_group_arn=self.target_group.arn,
                                target_id=compute.function_arn, depends_on=[permission])

        LbListener(self, "https", load_balancer_arn=self.alb.arn, port=443, protocol="HTTPS",
                   ssl_policy=lb_config.ssl_policy, certificate_arn=certificate_arn,
                   default_action=[LbListenerDefaultAction(type="forward", target_group_arn=self.target_group.arn)])
        LbListener(self, "http", load_balancer_arn=self.alb.arn, port=80, protocol="HTTP",
                   default_action=[LbListenerDefaultAction(
                       type="redirect", redirect=LbListenerDefaultActionRedirect(
                           protocol="HTTPS", port="443", status_code="HTTP_301"))])
        Wafv2WebAclAssociation(self, "waf", resource_arn=self.alb.arn, web_acl_arn=security.web_acl.arn)

        self.dns_name = self.alb.dns_name
        self.zone_id = self.alb.zone_id
        self.arn_suffix = self.alb.arn_suffix
        self.target_group_arn_suffix = self.target_group.arn_suffix

    def _certificate(self, config: Config, *, zone_id: str) -> str:
        """A certificate for the service name, validated by a DNS record in the configured zone."""
        certificate = AcmCertificate(self, "certificate", domain_name=config.dns.record_name,
                                     validation_method="DNS", key_algorithm="EC_prime256v1",
                                     lifecycle={"create_before_destroy": True})
        option = certificate.domain_validation_options.get(0)
        record = Route53Record(self, "certificate-validation", zone_id=zone_id,
                               name=option.resource_record_name, type=option.resource_record_type,
                               records=[option.resource_record_value], ttl=60, allow_overwrite=True)
        validation = AcmCertificateValidation(self, "certificate-validated", certificate_arn=certificate.arn,
                                              validation_record_fqdns=[record.fqdn])
        return validation.certificate_arn

    def _access_log_bucket(self, config: Config) -> S3Bucket:
        """ALB access logs. ELB delivers only to buckets encrypted with S3-managed keys (SSE-S3),
        so this bucket cannot use the CMK; it is private, versioned and TLS-only instead."""
        bucket = S3Bucket(self, "access-logs", bucket=f"payment-alb-logs-{config.name}-{self.account_id}",
                          force_destroy=False)
        S3BucketPublicAccessBlock(self, "access-logs-public-block", bucket=bucket.id, block_public_acls=True,
                                  block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True)
        S3BucketOwnershipControls(self, "access-logs-ownership", bucket=bucket.id,
                                  rule=S3BucketOwnershipControlsRule(object_ownership="BucketOwnerEnforced"))
        S3BucketServerSideEncryptionConfigurationA(
            self, "access-logs-encryption", bucket=bucket.id,
            rule=[S3BucketServerSideEncryptionConfigurationRuleA(
                apply_server_side_encryption_by_default=(
                    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                        sse_algorithm="AES256")))])
        S3BucketVersioningA(self, "access-logs-versioning", bucket=bucket.id,
                            versioning_configuration=S3BucketVersioningVersioningConfiguration(status="Enabled"))
        days = config.load_balancer.access_log_expiration_days
        S3BucketLifecycleConfiguration(self, "access-logs-lifecycle", bucket=bucket.id, rule=[
            S3BucketLifecycleConfigurationRule(
                id="expire-access-logs", status="Enabled", filter=[S3BucketLifecycleConfigurationRuleFilter(prefix="")],
                expiration=[S3BucketLifecycleConfigurationRuleExpiration(days=days)],
                noncurrent_version_expiration=[
                    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(noncurrent_days=30)],
                abort_incomplete_multipart_upload=[
                    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(days_after_initiation=7)])])

        elb_account = DataAwsElbServiceAccount(self, "elb-account")
        log_objects = f"{bucket.arn}/{ACCESS_LOG_PREFIX}/AWSLogs/{self.account_id}/*"
        policy = policy_document(self, "access-logs-policy", [
            # Older regions deliver as the regional ELB account, newer ones as the log-delivery service.
            allow(["s3:PutObject"], [log_objects], sid="ElbLogDelivery",
                  principals={"AWS": [elb_account.arn]}),
            allow(["s3:PutObject"], [log_objects], sid="ElbLogDeliveryService",
                  principals={"Service": ["logdelivery.elasticloadbalancing.amazonaws.com"]}),
            deny(["s3:*"], [bucket.arn, f"{bucket.arn}/*"], sid="TlsOnly", principals={"AWS": ["*"]},
                 conditions=[("Bool", "aws:SecureTransport", ["false"])]),
        ])
        self._logs_bucket_policy = S3BucketPolicy(self, "access-logs-bucket-policy", bucket=bucket.id,
                                                  policy=policy.json)
        return bucket
