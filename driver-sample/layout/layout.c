/*
 * fltport-sample-layout: prints the sample protocol's sizes, offsets and constants as the C
 * compiler sees them (protocol.h), as one line of JSON. test/integration compares them with
 * protocol.js, which describes the same structs with koffi.
 */
#include <windows.h>

#include <stdio.h>

#include "../protocol.h"

#define LAYOUT_BEGIN(type) printf("%s\"" #type "\":{\"size\":%u,\"offsets\":{", firstType ? "" : ",", (unsigned)sizeof(type)), firstType = 0, firstField = 1
#define LAYOUT_FIELD(type, field) printf("%s\"" #field "\":%u", firstField ? "" : ",", (unsigned)FIELD_OFFSET(type, field)), firstField = 0
#define LAYOUT_END() printf("}}")
#define LAYOUT_CONSTANT(name) printf(",\"" #name "\":%lu", (unsigned long)(name))

static void PrintLayout(void)
{
    int firstType = 1, firstField = 1;
    printf("{\"structs\":{");
    LAYOUT_BEGIN(FS_CONNECT_CONTEXT);
    LAYOUT_FIELD(FS_CONNECT_CONTEXT, Magic);
    LAYOUT_FIELD(FS_CONNECT_CONTEXT, Version);
    LAYOUT_FIELD(FS_CONNECT_CONTEXT, Flags);
    LAYOUT_FIELD(FS_CONNECT_CONTEXT, Reserved);
    LAYOUT_END();
    LAYOUT_BEGIN(FS_COMMAND_HEADER);
    LAYOUT_FIELD(FS_COMMAND_HEADER, Command);
    LAYOUT_FIELD(FS_COMMAND_HEADER, PayloadBytes);
    LAYOUT_END();
    LAYOUT_BEGIN(FS_STATS);
    LAYOUT_FIELD(FS_STATS, OpensSeen);
    LAYOUT_FIELD(FS_STATS, SelfSkipped);
    LAYOUT_FIELD(FS_STATS, NotificationsSent);
    LAYOUT_FIELD(FS_STATS, Replies);
    LAYOUT_FIELD(FS_STATS, Denials);
    LAYOUT_FIELD(FS_STATS, Timeouts);
    LAYOUT_FIELD(FS_STATS, MalformedReplies);
    LAYOUT_FIELD(FS_STATS, SendFailures);
    LAYOUT_FIELD(FS_STATS, NoAgent);
    LAYOUT_FIELD(FS_STATS, Connects);
    LAYOUT_FIELD(FS_STATS, Refused);
    LAYOUT_FIELD(FS_STATS, Disconnects);
    LAYOUT_FIELD(FS_STATS, EventsSent);
    LAYOUT_FIELD(FS_STATS, EventsDropped);
    LAYOUT_FIELD(FS_STATS, Connections);
    LAYOUT_FIELD(FS_STATS, Agents);
    LAYOUT_END();
    LAYOUT_BEGIN(FS_CONFIG);
    LAYOUT_FIELD(FS_CONFIG, Flags);
    LAYOUT_FIELD(FS_CONFIG, ReplyTimeoutMs);
    LAYOUT_FIELD(FS_CONFIG, SuffixBytes);
    LAYOUT_FIELD(FS_CONFIG, Reserved);
    LAYOUT_FIELD(FS_CONFIG, Suffix);
    LAYOUT_END();
    LAYOUT_BEGIN(FS_OPEN_NOTIFICATION);
    LAYOUT_FIELD(FS_OPEN_NOTIFICATION, Kind);
    LAYOUT_FIELD(FS_OPEN_NOTIFICATION, DesiredAccess);
    LAYOUT_FIELD(FS_OPEN_NOTIFICATION, Sequence);
    LAYOUT_FIELD(FS_OPEN_NOTIFICATION, ProcessId);
    LAYOUT_FIELD(FS_OPEN_NOTIFICATION, PathBytes);
    LAYOUT_FIELD(FS_OPEN_NOTIFICATION, PathFlags);
    LAYOUT_FIELD(FS_OPEN_NOTIFICATION, Reserved);
    LAYOUT_FIELD(FS_OPEN_NOTIFICATION, Path);
    LAYOUT_END();
    LAYOUT_BEGIN(FS_CONFIG_EVENT);
    LAYOUT_FIELD(FS_CONFIG_EVENT, Kind);
    LAYOUT_FIELD(FS_CONFIG_EVENT, Reserved);
    LAYOUT_FIELD(FS_CONFIG_EVENT, ChangeCount);
    LAYOUT_FIELD(FS_CONFIG_EVENT, Config);
    LAYOUT_END();
    LAYOUT_BEGIN(FS_OPEN_REPLY);
    LAYOUT_FIELD(FS_OPEN_REPLY, Sequence);
    LAYOUT_FIELD(FS_OPEN_REPLY, Verdict);
    LAYOUT_FIELD(FS_OPEN_REPLY, Reserved);
    LAYOUT_END();
    printf("},\"constants\":{\"FS_MAX_CONNECTIONS\":%d", FS_MAX_CONNECTIONS);
    LAYOUT_CONSTANT(FS_CONTEXT_MAGIC);
    LAYOUT_CONSTANT(FS_PROTOCOL_VERSION);
    LAYOUT_CONSTANT(FS_CONNECT_AGENT);
    LAYOUT_CONSTANT(FS_COMMAND_PING);
    LAYOUT_CONSTANT(FS_COMMAND_GET_STATS);
    LAYOUT_CONSTANT(FS_COMMAND_SET_CONFIG);
    LAYOUT_CONSTANT(FS_MAX_PING_BYTES);
    LAYOUT_CONSTANT(FS_CONFIG_ENABLED);
    LAYOUT_CONSTANT(FS_MAX_SUFFIX_CHARS);
    LAYOUT_CONSTANT(FS_MIN_REPLY_TIMEOUT_MS);
    LAYOUT_CONSTANT(FS_MAX_REPLY_TIMEOUT_MS);
    LAYOUT_CONSTANT(FS_DEFAULT_REPLY_TIMEOUT_MS);
    LAYOUT_CONSTANT(FS_EVENT_TIMEOUT_MS);
    LAYOUT_CONSTANT(FS_MESSAGE_OPEN);
    LAYOUT_CONSTANT(FS_MESSAGE_CONFIG_CHANGED);
    LAYOUT_CONSTANT(FS_MAX_PATH_CHARS);
    LAYOUT_CONSTANT(FS_PATH_TRUNCATED);
    LAYOUT_CONSTANT(FS_MAX_MESSAGE_BYTES);
    LAYOUT_CONSTANT(FS_VERDICT_ALLOW);
    LAYOUT_CONSTANT(FS_VERDICT_DENY);
    LAYOUT_CONSTANT(FS_REPLY_HEADER_BYTES);
    printf("}}\n");
}

int main(void)
{
    PrintLayout();
    return 0;
}
