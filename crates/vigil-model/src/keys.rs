//! Attribute keys of the conventions Vigil normalises, in one place.
//!
//! Sources: OpenTelemetry GenAI semantic conventions, OpenInference semantic conventions and
//! OpenLLMetry (`opentelemetry-semantic-conventions-ai`).

/// OpenTelemetry resource and general keys.
pub mod otel {
    pub const SERVICE_NAME: &str = "service.name";
    pub const SERVICE_VERSION: &str = "service.version";
    pub const DEPLOYMENT_ENVIRONMENT_NAME: &str = "deployment.environment.name";
    pub const DEPLOYMENT_ENVIRONMENT: &str = "deployment.environment";
    pub const ERROR_TYPE: &str = "error.type";
    pub const EXCEPTION_MESSAGE: &str = "exception.message";
    pub const EXCEPTION_TYPE: &str = "exception.type";
    pub const EXCEPTION_EVENT: &str = "exception";
    pub const SESSION_ID: &str = "session.id";
    pub const USER_ID: &str = "user.id";
    pub const ENDUSER_ID: &str = "enduser.id";
    pub const EVENT_NAME: &str = "event.name";
}

/// OpenTelemetry GenAI semantic conventions.
pub mod genai {
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
    pub const SYSTEM: &str = "gen_ai.system";
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    pub const RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
    pub const USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    pub const USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    pub const USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
    pub const USAGE_REASONING_OUTPUT_TOKENS: &str = "gen_ai.usage.reasoning.output_tokens";
    pub const INPUT_MESSAGES: &str = "gen_ai.input.messages";
    pub const OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
    pub const SYSTEM_INSTRUCTIONS: &str = "gen_ai.system_instructions";
    pub const TOOL_DEFINITIONS: &str = "gen_ai.tool.definitions";
    pub const TOOL_NAME: &str = "gen_ai.tool.name";
    pub const TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
    pub const TOOL_CALL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
    pub const TOOL_CALL_RESULT: &str = "gen_ai.tool.call.result";
    pub const AGENT_NAME: &str = "gen_ai.agent.name";
    pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";
    /// Older GenAI per-message events, on spans or as log records.
    pub const EVENT_SYSTEM_MESSAGE: &str = "gen_ai.system.message";
    pub const EVENT_USER_MESSAGE: &str = "gen_ai.user.message";
    pub const EVENT_ASSISTANT_MESSAGE: &str = "gen_ai.assistant.message";
    pub const EVENT_TOOL_MESSAGE: &str = "gen_ai.tool.message";
    pub const EVENT_CHOICE: &str = "gen_ai.choice";
    pub const EVENT_OPERATION_DETAILS: &str = "gen_ai.client.inference.operation.details";
}

/// OpenInference semantic conventions.
pub mod openinference {
    pub const SPAN_KIND: &str = "openinference.span.kind";
    pub const INPUT_VALUE: &str = "input.value";
    pub const OUTPUT_VALUE: &str = "output.value";
    pub const LLM_MODEL_NAME: &str = "llm.model_name";
    pub const LLM_REQUEST_MODEL_NAME: &str = "llm.request.model_name";
    pub const LLM_RESPONSE_MODEL_NAME: &str = "llm.response.model_name";
    pub const LLM_PROVIDER: &str = "llm.provider";
    pub const LLM_SYSTEM: &str = "llm.system";
    pub const LLM_FINISH_REASON: &str = "llm.finish_reason";
    pub const TOKEN_PROMPT: &str = "llm.token_count.prompt";
    pub const TOKEN_COMPLETION: &str = "llm.token_count.completion";
    pub const TOKEN_CACHE_READ: &str = "llm.token_count.prompt_details.cache_read";
    pub const TOKEN_REASONING: &str = "llm.token_count.completion_details.reasoning";
    pub const INPUT_MESSAGES: &str = "llm.input_messages";
    pub const OUTPUT_MESSAGES: &str = "llm.output_messages";
    pub const TOOLS: &str = "llm.tools";
    pub const TOOL_NAME: &str = "tool.name";
    pub const TOOL_PARAMETERS: &str = "tool.parameters";
    pub const TOOL_CALL_ID: &str = "tool_call.id";
    pub const TOOL_CALL_FUNCTION_NAME: &str = "tool_call.function.name";
    pub const TOOL_CALL_FUNCTION_ARGUMENTS: &str = "tool_call.function.arguments";
    pub const AGENT_NAME: &str = "agent.name";
}

/// OpenLLMetry (Traceloop) conventions, including the legacy indexed GenAI keys.
pub mod openllmetry {
    pub const SPAN_KIND: &str = "traceloop.span.kind";
    pub const ENTITY_NAME: &str = "traceloop.entity.name";
    pub const ENTITY_INPUT: &str = "traceloop.entity.input";
    pub const ENTITY_OUTPUT: &str = "traceloop.entity.output";
    pub const WORKFLOW_NAME: &str = "traceloop.workflow.name";
    pub const ASSOCIATION_PREFIX: &str = "traceloop.association.properties.";
    /// The association properties that name a session or a user, in the order they are tried.
    pub const ASSOCIATION_SESSION: [&str; 3] = [
        "traceloop.association.properties.session_id",
        "traceloop.association.properties.session.id",
        "traceloop.association.properties.conversation_id",
    ];
    pub const ASSOCIATION_USER: [&str; 2] = [
        "traceloop.association.properties.user_id",
        "traceloop.association.properties.user.id",
    ];
    pub const REQUEST_TYPE: &str = "llm.request.type";
    pub const PROMPT_PREFIX: &str = "gen_ai.prompt";
    pub const COMPLETION_PREFIX: &str = "gen_ai.completion";
    pub const REQUEST_FUNCTIONS: &str = "llm.request.functions";
    pub const USAGE_PROMPT_TOKENS: &str = "gen_ai.usage.prompt_tokens";
    pub const USAGE_COMPLETION_TOKENS: &str = "gen_ai.usage.completion_tokens";
    pub const USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read_input_tokens";
    pub const LLM_USAGE_PROMPT_TOKENS: &str = "llm.usage.prompt_tokens";
    pub const LLM_USAGE_COMPLETION_TOKENS: &str = "llm.usage.completion_tokens";
    pub const LLM_USAGE_REASONING_TOKENS: &str = "llm.usage.reasoning_tokens";
}

#[cfg(test)]
mod tests {
    use super::openllmetry as ol;

    #[test]
    fn association_keys_are_association_properties() {
        for key in ol::ASSOCIATION_SESSION.iter().chain(&ol::ASSOCIATION_USER) {
            assert!(key.starts_with(ol::ASSOCIATION_PREFIX), "{key}");
        }
    }
}
