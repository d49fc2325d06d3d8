"""network: the VPC, its subnets over three AZs, egress, the path to on-prem, and flow logs."""

from __future__ import annotations

from constructs import Construct

from lib.cdk import TerraformResourceLifecycle
from lib.cdk.aws.cloudwatch_log_group import CloudwatchLogGroup
from lib.cdk.aws.default_security_group import DefaultSecurityGroup
from lib.cdk.aws.ec2_transit_gateway_vpc_attachment import Ec2TransitGatewayVpcAttachment
from lib.cdk.aws.eip import Eip
from lib.cdk.aws.flow_log import FlowLog
from lib.cdk.aws.iam_role import IamRole
from lib.cdk.aws.iam_role_policy import IamRolePolicy
from lib.cdk.aws.internet_gateway import InternetGateway
from lib.cdk.aws.nat_gateway import NatGateway
from lib.cdk.aws.route import Route
from lib.cdk.aws.route53_hosted_zone_dnssec import Route53HostedZoneDnssec
from lib.cdk.aws.route53_key_signing_key import Route53KeySigningKey
from lib.cdk.aws.route53_zone import Route53Zone
from lib.cdk.aws.route_table import RouteTable
from lib.cdk.aws.route_table_association import RouteTableAssociation
from lib.cdk.aws.subnet import Subnet
from lib.cdk.aws.vpc import Vpc
from lib.cdk.aws.vpn_gateway_attachment import VpnGatewayAttachment
from lib.config import Config
from lib.constructs.ids import value_id
from lib.constructs.iam import allow, assume_role_policy, policy_document
from lib.constructs.kms import EncryptionKey, KeyGovernance, cloudwatch_logs_statement, key_statement
from lib.stacks.base import BaseStack

AZ_COUNT = 3


class NetworkStack(BaseStack):
    """Public subnets hold the ALB and NAT gateways; private subnets hold Aurora, the Lambdas and
    DMS, and route to on-prem through the configured VPN or transit gateway."""

    def __init__(self, scope: Construct, *, config: Config) -> None:
        super().__init__(scope, "network", config=config)
        net = config.network
        self._zone_ids = net.availability_zone_ids
        self._key_governance = KeyGovernance.of(config, account_id=self.account_id, partition=self.partition)
        self._keep = TerraformResourceLifecycle(prevent_destroy=config.security.prevent_destroy)

        self.vpc = Vpc(self, "vpc", cidr_block=net.vpc_cidr, enable_dns_hostnames=True, enable_dns_support=True,
                       tags={"Name": self.resource_name("vpc")})
        # The default group is attached to nothing we create; with no rules it admits and emits nothing.
        DefaultSecurityGroup(self, "default-sg", vpc_id=self.vpc.id, ingress=[], egress=[],
                             tags={"Name": self.resource_name("default-locked")})

        public = [self._subnet("public", index, cidr) for index, cidr in enumerate(net.public_subnet_cidrs)]
        private = [self._subnet("private", index, cidr) for index, cidr in enumerate(net.private_subnet_cidrs)]
        self.public_subnet_ids = [subnet.id for subnet in public]
        self.private_subnet_ids = [subnet.id for subnet in private]
        # The zone names (which differ per account) of the private subnets, for what must sit in
        # the same zone as one of them (the database writer and reader).
        self.availability_zones = [subnet.availability_zone for subnet in private]

        igw = InternetGateway(self, "igw", vpc_id=self.vpc.id, tags={"Name": self.resource_name("igw")})
        public_routes = RouteTable(self, "public-rt", vpc_id=self.vpc.id, tags={"Name": self.resource_name("public")})
        Route(self, "public-default", route_table_id=public_routes.id, destination_cidr_block="0.0.0.0/0",
              gateway_id=igw.id)
        for index, subnet in enumerate(public):
            RouteTableAssociation(self, f"public-rta-{index}", subnet_id=subnet.id, route_table_id=public_routes.id)

        nat_count = AZ_COUNT if net.nat_gateway_mode == "per_az" else 1
        nats = []
        for index in range(nat_count):
            eip = Eip(self, f"nat-eip-{index}", domain="vpc", tags={"Name": self.resource_name(f"nat-{index}")})
            nats.append(NatGateway(self, f"nat-{index}", allocation_id=eip.allocation_id, subnet_id=public[index].id,
                                   tags={"Name": self.resource_name(f"nat-{index}")}, depends_on=[igw]))

        onprem_gateway = self._onprem_gateway(config, private)
        for index, subnet in enumerate(private):
            table = RouteTable(self, f"private-rt-{index}", vpc_id=self.vpc.id,
                               tags={"Name": self.resource_name(f"private-{index}")})
            RouteTableAssociation(self, f"private-rta-{index}", subnet_id=subnet.id, route_table_id=table.id)
            Route(self, f"private-default-{index}", route_table_id=table.id, destination_cidr_block="0.0.0.0/0",
                  nat_gateway_id=nats[index % nat_count].id)
            for cidr in config.onprem.cidrs:
                # Keyed by the CIDR, not its position: removing one route leaves the others alone.
                Route(self, f"private-onprem-{index}-{value_id(cidr)}", route_table_id=table.id,
                      destination_cidr_block=cidr, **onprem_gateway)

        self._flow_logs(config)
        self._hosted_zone(config)

    def _hosted_zone(self, config: Config) -> None:
        """The public zone of the service name. A created zone lives here, upstream of both the
        load-balancer stack (certificate validation) and the routing stack (weighted records)."""
        if config.dns.zone_id:
            self.zone_id = config.dns.zone_id
            return
        # Its name servers are delegated at the parent: a new zone would answer with other servers.
        zone = Route53Zone(self, "zone", name=config.dns.zone_name,
                           comment=f"payment-migration {config.name}: service name and certificate validation",
                           lifecycle=self._keep)
        self.zone_id = zone.zone_id
        self._dnssec(config, zone)

    def _dnssec(self, config: Config, zone: Route53Zone) -> None:
        """Signs the created zone. Route 53 signs only with an asymmetric key in us-east-1; the
        operator publishes the DS record at the parent after the first deploy (README)."""
        us_east_1 = self.us_east_1
        source = {"StringEquals": {"aws:SourceAccount": self.account_id}}
        key = EncryptionKey(
            self, "dnssec-key", alias=self.resource_name("dnssec"), key_spec="ECC_NIST_P256", key_usage="SIGN_VERIFY",
            description=f"payment-migration {config.name}: DNSSEC key-signing key of {config.dns.zone_name}",
            governance=self._key_governance, region="us-east-1", provider=us_east_1,
            statements=[
                key_statement("Route53Dnssec", service="dnssec-route53.amazonaws.com",
                              actions=["kms:DescribeKey", "kms:GetPublicKey", "kms:Sign"], conditions=source),
                key_statement("Route53DnssecGrant", service="dnssec-route53.amazonaws.com",
                              actions=["kms:CreateGrant"],
                              conditions={**source, "Bool": {"kms:GrantIsForAWSResource": "true"}}),
            ])
        # Destroying the key-signing key of a zone whose DS record is published breaks resolution
        # of the whole zone for validating resolvers: kept from `terraform destroy` like the zone.
        signing_key = Route53KeySigningKey(self, "ksk", hosted_zone_id=zone.id, key_management_service_arn=key.arn,
                                           name=f"payment_{config.name.replace('-', '_')}_ksk", status="ACTIVE",
                                           lifecycle=self._keep)
        Route53HostedZoneDnssec(self, "dnssec", hosted_zone_id=signing_key.hosted_zone_id,
                                signing_status="SIGNING")

    def _subnet(self, tier: str, index: int, cidr: str) -> Subnet:
        # Placed by zone id, straight from config: the same physical zone in every account, and no
        # data source whose answer (an impaired zone left out) could move a subnet at the next plan.
        return Subnet(self, f"{tier}-{index}", vpc_id=self.vpc.id, cidr_block=cidr,
                      availability_zone_id=self._zone_ids[index], map_public_ip_on_launch=False,
                      tags={"Name": self.resource_name(f"{tier}-{index}"), "Tier": tier})

    def _onprem_gateway(self, config: Config, private: list[Subnet]) -> dict:
        """Attach the configured gateway to this VPC; returns the route target for on-prem CIDRs."""
        onprem = config.onprem
        if onprem.vpn_gateway_id:
            attachment = VpnGatewayAttachment(self, "vgw-attachment", vpc_id=self.vpc.id,
                                              vpn_gateway_id=onprem.vpn_gateway_id)
            return {"gateway_id": onprem.vpn_gateway_id, "depends_on": [attachment]}
        attachment = Ec2TransitGatewayVpcAttachment(
            self, "tgw-attachment", vpc_id=self.vpc.id, transit_gateway_id=onprem.transit_gateway_id,
            subnet_ids=[subnet.id for subnet in private], dns_support="enable",
            tags={"Name": self.resource_name("tgw")})
        return {"transit_gateway_id": onprem.transit_gateway_id, "depends_on": [attachment]}

    def _flow_logs(self, config: Config) -> None:
        """Every accepted and rejected flow, to a log group under a key of this stack's own (the
        security stack's keys come later in the graph)."""
        key = EncryptionKey(
            self, "flow-logs-key", alias=self.resource_name("flow-logs"),
            description=f"VPC flow logs of payment-migration {config.name}", governance=self._key_governance,
            statements=[cloudwatch_logs_statement(region=config.region, account_id=self.account_id,
                                                  partition=self.partition)],
        )
        log_group = CloudwatchLogGroup(self, "flow-logs", name=f"/payment-migration/{config.name}/vpc-flow-logs",
                                       kms_key_id=key.arn, retention_in_days=config.logs.retention_days)
        trust = assume_role_policy(self, "flow-logs-trust", "vpc-flow-logs.amazonaws.com", account_id=self.account_id)
        role = IamRole(self, "flow-logs-role", name=self.resource_name("vpc-flow-logs"),
                       assume_role_policy=trust.json)
        delivery = policy_document(self, "flow-logs-delivery", [
            allow(["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                  [log_group.arn, f"{log_group.arn}:*"]),
        ])
        IamRolePolicy(self, "flow-logs-policy", role=role.id, name="deliver-flow-logs", policy=delivery.json)
        FlowLog(self, "flow-log", vpc_id=self.vpc.id, traffic_type="ALL", log_destination_type="cloud-watch-logs",
                log_destination=log_group.arn, iam_role_arn=role.arn, max_aggregation_interval=60)
