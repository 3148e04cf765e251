// Golden vectors for tests/adapters/test_gateway_sdk.py: how the public VXP Java SDK (SDKVXP 2.0.1)
// builds the XroadVnpt-* authentication headers, reproduced with the same Java classes it
// uses (java.util.HashMap, Gson's JsonObject, javax.crypto HmacSHA256, commons-codec Hex,
// SimpleDateFormat) so that the Python emulation can be checked byte for byte.
//
// Regenerate (Debian: apt-get install default-jdk-headless libgoogle-gson-java
// libcommons-codec-java):
//   CP=/usr/share/java/gson.jar:/usr/share/java/commons-codec.jar
//   javac -cp $CP -d /tmp/golden tests/adapters/vxp_sdk/GoldenVectors.java
//   java -cp $CP:/tmp/golden GoldenVectors > tests/adapters/vxp_sdk/vectors.json
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import java.security.MessageDigest;
import java.text.SimpleDateFormat;
import java.util.ArrayList;
import java.util.Date;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TimeZone;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.apache.commons.codec.binary.Hex;

public class GoldenVectors {
    /** One SDK service object: like VnptService, its timestamp is fixed when it is made
     *  and its header map keeps every parameter of every call made through it. */
    static class Service {
        final String secret;
        final HashMap<String, String> headers = new HashMap<>();

        Service(String systemId, String secret, long epochMillis) {
            this.secret = secret;
            SimpleDateFormat format = new SimpleDateFormat("ddMMyyyy'T'HHmmss+SSSS");
            format.setTimeZone(TimeZone.getTimeZone("Asia/Ho_Chi_Minh"));
            headers.put("timestamp", format.format(new Date(epochMillis)));
            headers.put("systemid", systemId);
        }

        JsonObject call(String name, String contentType, String[][] params, byte[] file)
                throws Exception {
            headers.put("Content-Type", contentType);
            for (String[] p : params) headers.put(p[0], p[1]);
            if (file != null) headers.put("hash-file", hashFile(file));
            JsonObject signed = new JsonObject();
            JsonArray sent = new JsonArray();
            StringBuilder keys = new StringBuilder();
            for (Map.Entry<String, String> h : headers.entrySet()) {
                if (h.getKey().equals("Content-Type")) sent.add(pair(h.getKey(), h.getValue()));
                signed.addProperty("XroadVnpt-" + h.getKey(), h.getValue());
                sent.add(pair("XroadVnpt-" + h.getKey(), h.getValue()));
                keys.append(h.getKey()).append(';');
            }
            String key = keys.substring(0, keys.length() - 1);
            String signHeader = signed.toString();
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(secret.getBytes("UTF-8"), "HmacSHA256"));
            String hash = Hex.encodeHexString(mac.doFinal(signHeader.getBytes("UTF-8")));
            sent.add(pair("XroadVnpt-sign-header-key", key));
            sent.add(pair("XroadVnpt-sign-header", signHeader));
            sent.add(pair("XroadVnpt-hash-header", hash));
            sent.add(pair("User-Agent", "JAVASDKAgent/1.0.0 XRoad/VPCP"));
            sent.add(pair("XroadVnpt-version", "3.0.201608"));
            JsonObject vector = new JsonObject();
            vector.addProperty("call", name);
            vector.add("headers", sent);
            return vector;
        }
    }

    static JsonArray pair(String name, String value) {
        JsonArray a = new JsonArray();
        a.add(name);
        a.add(value);
        return a;
    }

    /** The SDK's hash-file: SHA-256, each byte as Integer.toHexString (no zero padding). */
    static String hashFile(byte[] data) throws Exception {
        byte[] digest = MessageDigest.getInstance("SHA-256").digest(data);
        StringBuilder hex = new StringBuilder();
        for (byte b : digest) hex.append(Integer.toHexString(0xFF & b));
        return hex.toString();
    }

    static byte[] file(int size) {
        byte[] data = new byte[size];
        for (int i = 0; i < size; i++) data[i] = (byte) (i * 7 + 3);
        return data;
    }

    public static void main(String[] args) throws Exception {
        List<JsonObject> out = new ArrayList<>();
        long t = 1795312215042L;  // a fixed instant, with milliseconds (042)
        Service a = new Service("vxp.saas.03", "A7TKG/r2gOKTEpe1MhWx6zw8O4JfzN0KkCRS6HZY81Ve", t);
        out.add(a.call("getReceivedEdocList", "application/json",
                new String[][] {{"servicetype", "eDoc"}, {"messagetype", "edoc"}}, null));
        out.add(a.call("getEdoc", "application/json",
                new String[][] {{"filePath", "xml"}, {"docId", "5bebcfef-f858-e3e0-cc15-4762aa01bb02"}}, null));
        out.add(a.call("updateStatus", "application/json",
                new String[][] {{"status", "done"}, {"docId", "5bebcfef-f858-e3e0-cc15-4762aa01bb02"}}, null));
        Service b = new Service("hệ-thống.01", "bí mật \"quoted\" \\ secret", t + 1);
        out.add(b.call("sendEdoc", "application/octet-stream",
                new String[][] {{"from", "000.00.00.G22"}, {"servicetype", "eDoc"},
                                {"messagetype", "edoc"},
                                {"to", "[{\"code\":\"000.00.00.H41\"},\"<&>=\"]"},
                                {"note", "Công văn\tsố\n1\u2028\u0001"}}, file(5000)));
        // enough parameters for the SDK's HashMap to grow past 16 buckets
        out.add(b.call("getSentEdocList", "application/json",
                new String[][] {{"docId", "d-1"}, {"servicetype", "eDoc"}, {"messagetype", "status"},
                                {"alpha", "1"}, {"beta", "2"}, {"gamma", "3"}, {"delta", "4"},
                                {"epsilon", "5"}}, null));
        JsonObject files = new JsonObject();
        for (int size : new int[] {0, 1, 5000}) files.addProperty(String.valueOf(size), hashFile(file(size)));
        System.out.println("{\"epoch_ms\": " + t + ", \"hash_file\": " + files + ", \"calls\": [");
        for (int i = 0; i < out.size(); i++)
            System.out.println("  " + out.get(i) + (i + 1 < out.size() ? "," : ""));
        System.out.println("]}");
    }
}
