"""The floor for synthesis time: a one-resource app importing the same provider bindings."""

import sys
import tempfile

from cdktf import App, TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider
from cdktf_cdktf_provider_aws.vpc import Vpc

app = App(outdir=sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
stack = TerraformStack(app, "floor")
AwsProvider(stack, "aws", region="eu-west-1")
Vpc(stack, "vpc", cidr_block="10.0.0.0/16")
app.synth()
