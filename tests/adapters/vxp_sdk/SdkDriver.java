// Drives the REAL, unmodified public VXP SDK (SDKVXP 2.0.1 or 2.0.0, whichever jar is on
// the classpath) for tests/adapters/test_vxp_real_sdk.py and bench/bench_vxp_sdk.py.
//
// One long-running process per scenario: commands come as JSON lines on stdin, one JSON
// line per command goes back on stdout. Everything the SDK prints itself (it prints its
// requests, its answers and the stack traces of the exceptions it swallows) is captured per
// call, never mixed with the answers: the exceptions found in it are reported as data
// ("swallowed"), because the SDK catches its own NullPointerExceptions, prints them and
// hands its caller a result whose fields are all null.
//
// Commands (every one may carry an "id", echoed back):
//   {"cmd":"config","name":N,"endpoint":URL,"systemId":S,"secret":K,"storePath":DIR,
//    "maxConnection":10,"retry":3}             VnptProperties, kept under N
//   {"cmd":"open","name":O,"config":N,"kind":"knobstick"|"agency"}
//                                              one service object kept for a scenario
//   {"cmd":"call","op":OP,"args":[...],"object":O}   a call through a kept object, or
//   {"cmd":"call","op":OP,"args":[...],"config":N}   through a new object made for it
//   {"cmd":"bench",...}                        see bench() below
//   {"cmd":"quit"}
// Every answer carries "ok" (the call returned), and "result" (the SDK's result object as
// its fields, nulls kept) or "exception" (class, message, frames): every Throwable is data.
//
// Built at test time: javac -cp <the jars of one SDK version> -d <tmp> SdkDriver.java
import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.vpcp.services.AgencyServiceImp;
import com.vpcp.services.KnobstickServiceImp;
import com.vpcp.services.VnptProperties;
import com.vpcp.services.VnptService;
import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TimeZone;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class SdkDriver {
    static final Gson GSON = new GsonBuilder().serializeNulls().disableHtmlEscaping().create();
    static final Pattern THROWN = Pattern.compile(
            "^(?:Caused by: |Exception in thread \"[^\"]*\" )?((?:[a-zA-Z_$][\\w$]*\\.)+[\\w$]*(?:Exception|Error))(?::\\s?(.*))?$");
    static final String[] AGENCY_OPS = {"getAgenciesList", "getAgenciesListQD20",
            "getSynchronizeUnit", "registerAgency", "deleteAgency"};

    static PrintStream answers;
    static final ByteArrayOutputStream printed = new ByteArrayOutputStream();
    static final Map<String, VnptProperties> configs = new HashMap<>();
    static final Map<String, VnptService> objects = new HashMap<>();

    public static void main(String[] argv) throws Exception {
        answers = new PrintStream(new FileOutputStream(FileDescriptor.out), true, "UTF-8");
        PrintStream capture = new PrintStream(printed, true, "UTF-8");
        System.setOut(capture);
        System.setErr(capture);
        JsonObject ready = new JsonObject();
        ready.addProperty("event", "ready");
        ready.addProperty("timezone", TimeZone.getDefault().getID());
        ready.addProperty("java", System.getProperty("java.version"));
        ready.addProperty("sdk_jar", new File(KnobstickServiceImp.class.getProtectionDomain()
                .getCodeSource().getLocation().toURI()).getName());
        ready.addProperty("has_count", findMethod(KnobstickServiceImp.class, "countReceiveEdoc", 1) != null);
        answers.println(GSON.toJson(ready));
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.trim().isEmpty()) continue;
            JsonObject reply;
            JsonObject command = null;
            try {
                command = new JsonParser().parse(line).getAsJsonObject();
                String cmd = str(command, "cmd");
                if ("quit".equals(cmd)) break;
                reply = handle(cmd, command);
            } catch (Throwable t) {  // a driver or protocol error, reported as such
                reply = new JsonObject();
                reply.addProperty("ok", false);
                reply.addProperty("driver_error", true);
                reply.add("exception", describe(t));
            }
            if (command != null && command.has("id")) reply.add("id", command.get("id"));
            answers.println(GSON.toJson(reply));
        }
        answers.flush();
        System.exit(0);
    }

    static JsonObject handle(String cmd, JsonObject c) throws Exception {
        if ("config".equals(cmd)) return config(c);
        if ("open".equals(cmd)) return open(c);
        if ("call".equals(cmd)) return call(c);
        if ("bench".equals(cmd)) return bench(c);
        throw new IllegalArgumentException("unknown command " + cmd);
    }

    // ------------------------------------------------------------------ commands --

    static JsonObject config(JsonObject c) {
        JsonObject reply = new JsonObject();
        try {
            VnptProperties p = new VnptProperties(str(c, "endpoint"), str(c, "systemId"),
                    str(c, "secret"), str(c, "storePath"), intOr(c, "maxConnection", 10),
                    intOr(c, "retry", 3));
            configs.put(str(c, "name"), p);
            reply.addProperty("ok", true);
        } catch (Throwable t) {
            reply.addProperty("ok", false);
            reply.add("exception", describe(t));
        }
        return reply;
    }

    static JsonObject open(JsonObject c) {
        JsonObject reply = new JsonObject();
        printed.reset();
        try {
            VnptService service = make(str(c, "kind"), config(str(c, "config")));
            objects.put(str(c, "name"), service);
            reply.addProperty("ok", true);
            reply.addProperty("timestamp", headers(service).get("timestamp"));
        } catch (Throwable t) {
            reply.addProperty("ok", false);
            reply.add("exception", describe(t));
        }
        return reply;
    }

    /** One SDK call: through a kept object, or a new object made for this call only. */
    static JsonObject call(JsonObject c) {
        String op = str(c, "op");
        JsonObject reply = new JsonObject();
        reply.addProperty("op", op);
        List<String> args = new ArrayList<>();
        if (c.has("args")) for (JsonElement a : c.getAsJsonArray("args")) args.add(a.isJsonNull() ? null : a.getAsString());
        printed.reset();
        long started = System.nanoTime();
        VnptService service = null;
        try {
            if (c.has("object")) {
                service = objects.get(str(c, "object"));
                if (service == null) throw new IllegalArgumentException("no object " + str(c, "object"));
            } else {
                service = make(isAgencyOp(op) ? "agency" : "knobstick", config(str(c, "config")));
            }
            reply.addProperty("timestamp", headers(service).get("timestamp"));
            Method method = findMethod(service.getClass(), op, args.size());
            if (method == null) {
                reply.addProperty("ok", false);
                reply.addProperty("missing_in_sdk", true);
                reply.add("exception", describe(new NoSuchMethodException(
                        service.getClass().getName() + "." + op + " with " + args.size() + " argument(s)")));
            } else {
                Object result = method.invoke(service, args.toArray());
                reply.addProperty("ok", true);
                reply.addProperty("result_class", result == null ? null : result.getClass().getSimpleName());
                reply.add("result", result == null ? null : GSON.toJsonTree(result));
                addFileFacts(reply, result);
            }
        } catch (InvocationTargetException e) {
            reply.addProperty("ok", false);
            reply.add("exception", describe(e.getCause()));
        } catch (Throwable t) {
            reply.addProperty("ok", false);
            reply.add("exception", describe(t));
        }
        reply.addProperty("ms", (System.nanoTime() - started) / 1e6);
        String log = new String(printed.toByteArray(), StandardCharsets.UTF_8);
        reply.add("swallowed", thrownIn(log));
        reply.addProperty("log_tail", log.length() > 3000 ? log.substring(log.length() - 3000) : log);
        if (service != null) {
            try {
                reply.add("kept_parameters", GSON.toJsonTree(new ArrayList<>(headers(service).keySet())));
            } catch (Throwable ignored) {
                // informational only
            }
        }
        return reply;
    }

    /**
     * Timings in one JVM (bench/bench_vxp_sdk.py), each call through a new service object
     * as the SDK's examples make them: "send" sends each of "files" once; "receive" lists,
     * then gets and marks done every document, until n were taken or "timeout_ms" passed;
     * "call" makes "op"("args") n times. Answers the per-call milliseconds and the
     * failures, never the documents.
     */
    static JsonObject bench(JsonObject c) throws Exception {
        String mode = str(c, "mode");
        VnptProperties p = config(str(c, "config"));
        int n = intOr(c, "n", 1);
        JsonObject reply = new JsonObject();
        JsonArray times = new JsonArray();
        JsonArray failures = new JsonArray();
        long started = System.nanoTime();
        if ("send".equals(mode)) {
            String params = str(c, "params");
            for (JsonElement file : c.getAsJsonArray("files")) {
                printed.reset();
                long t0 = System.nanoTime();
                Object r = new KnobstickServiceImp(p).sendEdoc(params, file.getAsString());
                times.add(new com.google.gson.JsonPrimitive((System.nanoTime() - t0) / 1e6));
                String status = r == null ? null : ((com.vpcp.services.model.BasicResult) r).getStatus();
                if (!"OK".equals(status)) failures.add(r == null ? null : GSON.toJsonTree(r));
            }
        } else if ("receive".equals(mode)) {
            long deadline = System.currentTimeMillis() + intOr(c, "timeout_ms", 60000);
            int taken = 0;
            JsonArray listTimes = new JsonArray();
            while (taken < n && System.currentTimeMillis() < deadline) {
                printed.reset();
                long t0 = System.nanoTime();
                com.vpcp.services.model.GetReceivedEdocResult list = new KnobstickServiceImp(p)
                        .getReceivedEdocList("{\"servicetype\":\"eDoc\",\"messagetype\":\"edoc\"}");
                listTimes.add(new com.google.gson.JsonPrimitive((System.nanoTime() - t0) / 1e6));
                if (list == null || list.getKnobsticks() == null || list.getKnobsticks().isEmpty()) {
                    Thread.sleep(20);
                    continue;
                }
                for (com.vpcp.services.model.Knobstick item : list.getKnobsticks()) {
                    if (taken >= n) break;
                    printed.reset();
                    long t1 = System.nanoTime();
                    com.vpcp.services.model.GetEdocResult got = new KnobstickServiceImp(p).getEdoc(
                            "{\"filePath\":" + GSON.toJson(p.getStorePathDir()) + ",\"docId\":\"" + item.getId() + "\"}");
                    String done = "OK".equals(got == null ? null : got.getStatus()) ? "done" : "fail";
                    Object marked = new KnobstickServiceImp(p).updateStatus(
                            "{\"status\":\"" + done + "\",\"docId\":\"" + item.getId() + "\"}");
                    times.add(new com.google.gson.JsonPrimitive((System.nanoTime() - t1) / 1e6));
                    if ("fail".equals(done)) failures.add(GSON.toJsonTree(got));
                    taken++;
                }
            }
            reply.add("list_ms", listTimes);
            reply.addProperty("taken", taken);
        } else if ("call".equals(mode)) {
            String op = str(c, "op");
            List<String> args = new ArrayList<>();
            for (JsonElement a : c.getAsJsonArray("args")) args.add(a.getAsString());
            for (int i = 0; i < n; i++) {
                printed.reset();
                VnptService service = make(isAgencyOp(op) ? "agency" : "knobstick", p);
                long t0 = System.nanoTime();
                Object r = findMethod(service.getClass(), op, args.size()).invoke(service, args.toArray());
                times.add(new com.google.gson.JsonPrimitive((System.nanoTime() - t0) / 1e6));
                String status = r == null ? null : ((com.vpcp.services.model.BasicResult) r).getStatus();
                if (!"OK".equals(status)) failures.add(r == null ? null : GSON.toJsonTree(r));
            }
        } else {
            throw new IllegalArgumentException("bench mode " + mode);
        }
        reply.addProperty("ok", true);
        reply.addProperty("total_ms", (System.nanoTime() - started) / 1e6);
        reply.add("ms", times);
        reply.add("failures", failures);
        return reply;
    }

    // ------------------------------------------------------------------- helpers --

    static VnptService make(String kind, VnptProperties p) {
        return "agency".equals(kind) ? new AgencyServiceImp(p) : new KnobstickServiceImp(p);
    }

    static VnptProperties config(String name) {
        VnptProperties p = configs.get(name);
        if (p == null) throw new IllegalArgumentException("no config " + name);
        return p;
    }

    static boolean isAgencyOp(String op) {
        for (String a : AGENCY_OPS) if (a.equals(op)) return true;
        return false;
    }

    static Method findMethod(Class<?> type, String name, int arity) {
        for (Method m : type.getMethods()) {
            if (!m.getName().equals(name) || m.getParameterTypes().length != arity) continue;
            boolean strings = true;
            for (Class<?> p : m.getParameterTypes()) strings &= p == String.class;
            if (strings) return m;
        }
        return null;
    }

    /** The service object's header map: its fixed timestamp and every parameter it kept. */
    @SuppressWarnings("unchecked")
    static Map<String, String> headers(VnptService service) throws Exception {
        Field f = VnptService.class.getDeclaredField("headers");
        f.setAccessible(true);
        return (Map<String, String>) f.get(service);
    }

    /** For a GetEdocResult: the SHA-256 of the file the SDK wrote, and of its data. */
    static void addFileFacts(JsonObject reply, Object result) {
        if (!(result instanceof com.vpcp.services.model.GetEdocResult)) return;
        com.vpcp.services.model.GetEdocResult r = (com.vpcp.services.model.GetEdocResult) result;
        try {
            if (r.getFilePath() != null && new File(r.getFilePath()).isFile())
                reply.addProperty("file_sha256", sha256(Files.readAllBytes(new File(r.getFilePath()).toPath())));
            if (r.getData() != null)
                reply.addProperty("data_sha256", sha256(r.getData().getBytes(StandardCharsets.UTF_8)));
        } catch (Exception e) {
            reply.add("file_error", describe(e));
        }
    }

    static String sha256(byte[] data) throws Exception {
        StringBuilder hex = new StringBuilder();
        for (byte b : MessageDigest.getInstance("SHA-256").digest(data)) hex.append(String.format("%02x", b));
        return hex.toString();
    }

    static JsonObject describe(Throwable t) {
        JsonObject e = new JsonObject();
        e.addProperty("class", t.getClass().getName());
        e.addProperty("message", t.getMessage());
        JsonArray frames = new JsonArray();
        StackTraceElement[] stack = t.getStackTrace();
        for (int i = 0; i < Math.min(8, stack.length); i++) frames.add(new com.google.gson.JsonPrimitive(stack[i].toString()));
        e.add("frames", frames);
        if (t.getCause() != null && t.getCause() != t) e.add("cause", describe(t.getCause()));
        return e;
    }

    /** The exceptions the SDK printed (printStackTrace) instead of throwing them. */
    static JsonArray thrownIn(String log) {
        JsonArray found = new JsonArray();
        for (String l : log.split("\r?\n")) {
            Matcher m = THROWN.matcher(l.trim());
            if (!m.matches()) continue;
            JsonObject e = new JsonObject();
            e.addProperty("class", m.group(1));
            e.addProperty("message", m.group(2));
            found.add(e);
        }
        return found;
    }

    static String str(JsonObject o, String name) {
        JsonElement e = o.get(name);
        return e == null || e.isJsonNull() ? null : e.getAsString();
    }

    static int intOr(JsonObject o, String name, int fallback) {
        JsonElement e = o.get(name);
        return e == null || e.isJsonNull() ? fallback : e.getAsInt();
    }
}
