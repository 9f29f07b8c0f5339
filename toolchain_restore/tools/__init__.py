"""The 12 restoration tools: specs, architectures, the Toolbox module and their training data."""

from .architectures import LargeTool, SmallTool
from .specs import NUM_TOOLS, TOOL_SPECS, ToolSpec
from .toolbox import FP32_TOOLS_KEY, JOINT_TOOLBOX, SEPARATE_TOOLBOX, Toolbox, combine_toolboxes, load_toolbox

__all__ = ["LargeTool", "SmallTool", "NUM_TOOLS", "TOOL_SPECS", "ToolSpec", "Toolbox", "load_toolbox", "combine_toolboxes", "SEPARATE_TOOLBOX", "JOINT_TOOLBOX",
           "FP32_TOOLS_KEY"]
