"""The 12 restoration tools: specs, architectures, the Toolbox module and their training data."""

from .architectures import LargeTool, SmallTool
from .specs import NUM_TOOLS, TOOL_SPECS, ToolSpec
from .toolbox import SEPARATE_TOOLBOX, SHIPPED_TOOLBOX, Toolbox, combine_toolboxes, load_toolbox

__all__ = ["LargeTool", "SmallTool", "NUM_TOOLS", "TOOL_SPECS", "ToolSpec", "Toolbox", "load_toolbox", "combine_toolboxes", "SHIPPED_TOOLBOX", "SEPARATE_TOOLBOX"]
